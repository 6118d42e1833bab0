"""Rendering the Helm chart with the real helm binary, for the chart's tests.

The binary is the one the Makefile installs (``make .tools/helm/helm``, a prerequisite of ``make test``)
or ``$VIGIL_HELM``; a missing binary fails the tests that need it, never skips them.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "vigil"
CI_VALUES = {
    "default": None,
    "postgres": CHART / "ci" / "postgres-values.yaml",
    "monitoring": CHART / "ci" / "monitoring-values.yaml",
    "sink": CHART / "ci" / "sink-values.yaml",
}
RELEASE = "r"


def helm_binary() -> Path:
    path = Path(os.environ.get("VIGIL_HELM", ROOT / ".tools" / "helm" / "helm"))
    if not path.is_file():
        pytest.fail(f"no helm binary at {path}: `make test` installs it (or run `make .tools/helm/helm`)")
    return path


def helm(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm_binary()), *map(str, args)], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def values_args(name: str, sets: tuple[str, ...] = ()) -> list[str]:
    path = CI_VALUES[name]
    args = ["-f", str(path)] if path is not None else []
    for item in sets:
        args += ["--set", item]
    return args


@dataclass(frozen=True)
class Rendered:
    docs: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [
            d
            for d in self.all(kind)
            if component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"{len(found)} {kind} objects for component {component!r}"
        return found[0]

    def container(self, kind: str, component: str) -> dict[str, Any]:
        (container,) = self.one(kind, component)["spec"]["template"]["spec"]["containers"]
        result: dict[str, Any] = container
        return result

    def config_text(self) -> str:
        text: str = self.one("ConfigMap", "config")["data"]["config.yaml"]
        return text

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.config_text())
        return data


def render(name: str = "default", *sets: str, chart: Path = CHART) -> Rendered:
    args = ["template", RELEASE, str(chart), "--namespace", "gpu-monitoring", *values_args(name, sets)]
    result = helm(*args, check=True)
    return Rendered([d for d in yaml.safe_load_all(result.stdout) if d])


def render_error(name: str = "default", *sets: str) -> str:
    """helm's error for values the chart must refuse (it fails the test if they render)."""
    result = helm("template", RELEASE, str(CHART), *values_args(name, sets))
    assert result.returncode != 0, f"rendered, but should have been refused: {sets}"
    return result.stderr
