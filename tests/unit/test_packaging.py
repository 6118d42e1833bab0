"""The built wheel contains every module of the kernel and of each service, under ``vigil.``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "vigil": "vigil",
    "collectors": "vigil/collectors",
    "analytics": "vigil/analytics",
    "alerting": "vigil/alerting",
}


def expected_files() -> set[str]:
    out = set()
    for folder, target in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (path.suffix == ".yaml" and "catalogs" in path.parts):
                out.add(f"{target}/{path.relative_to(ROOT / folder).as_posix()}")
    return out


@pytest.mark.slow
def test_wheel_contains_every_module(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("vigil_aiops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = expected_files() - names
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    assert "vigil/collectors/__init__.py" in names
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)
