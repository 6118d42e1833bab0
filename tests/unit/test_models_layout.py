"""The model library is bus-free: no module under ``analytics/models/`` imports the rest of analytics.

Walks the AST of every module (relative imports resolved), so an import inside a function counts
as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vigil.analytics.models as library

ROOT = Path(library.__file__).resolve().parent
PACKAGE = "vigil.analytics.models"


def imported(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute name) of every import in ``source``, a module of ``package``; ``from m import
    x`` gives ``m.x`` (x may be a module)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                module = ".".join([*parts[: len(parts) - node.level + 1], *([module] if module else [])])
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def outside_the_library(source: str, package: str, where: str) -> list[str]:
    return [
        f"{where}:{line} imports {name}"
        for line, name in imported(source, package)
        if name.startswith("vigil.analytics.") and not name.startswith(PACKAGE + ".")
    ]


def problems_in(path: Path) -> list[str]:
    package = ".".join([PACKAGE, *path.relative_to(ROOT).parent.parts])
    return outside_the_library(path.read_text(), package, str(path.relative_to(ROOT)))


def test_the_model_library_imports_nothing_else_from_analytics() -> None:
    modules = sorted(ROOT.rglob("*.py"))
    assert len(modules) > 15 and any(p.parent.name == "predict" for p in modules)  # the walk sees the library
    problems = [problem for path in modules for problem in problems_in(path)]
    assert problems == []


def test_the_walk_finds_every_form_of_import() -> None:
    probe = (  # as if it were a module of models/predict/
        "import vigil.analytics.service\n"
        "from vigil.analytics.stages import slots\n"
        "from vigil.analytics import config\n"
        "from ...stages.engine import Engine\n"
        "from .. import registry\n"
        "from vigil.analytics.models.base import Detector\n"
        "def f():\n    from vigil.analytics.eval import smd\n"
    )
    found = outside_the_library(probe, PACKAGE + ".predict", "probe")
    assert [f.split(" imports ")[1] for f in found] == [
        "vigil.analytics.service",
        "vigil.analytics.stages.slots",
        "vigil.analytics.config",
        "vigil.analytics.stages.engine.Engine",
        "vigil.analytics.eval.smd",
    ]
