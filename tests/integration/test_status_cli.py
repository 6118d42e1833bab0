"""``vigil status`` against real HTTP servers on loopback (the services' own SelfMetricsServer):
a stalled, lagging service is reported with its reasons and exit 1; an unreachable one too; a run
file left by a dead ``vigil up`` is not taken for a running one."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from vigil.broker import free_port
from vigil.cli.app import build_app
from vigil.metrics_catalog import counter, gauge
from vigil.selfmetrics import SelfMetricsServer

pytestmark = pytest.mark.integration


@pytest.fixture
def lagging() -> Iterator[SelfMetricsServer]:
    registry = CollectorRegistry()
    lag = gauge(registry, "vigil_consumer_lag_records")
    lag.labels("vigil-analytics", "vigil.telemetry.v1", "0").set(12_000)
    lag.labels("vigil-analytics", "vigil.telemetry.v1", "1").set(500)
    counter(registry, "vigil_dead_letter_records_total").labels("vigil.telemetry.v1", "invalid_event").inc(3)
    health = {"ok": False, "service": "analytics", "poll_stalled": False, "lag_growing": True, "last_poll_age_s": 0.4}
    server = SelfMetricsServer(registry, lambda: health).start()
    yield server
    server.stop()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), ["status", *args], env={"COLUMNS": "200"})  # a wide table
    return result.exit_code, result.stdout


def test_an_unhealthy_and_an_unreachable_service_are_named_and_exit_1(lagging: SelfMetricsServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code, out = run("--url", lagging.url, "--url", dead, "--json")
    assert code == 1
    first, second = json.loads(out)["services"]
    assert first["name"] == "analytics" and first["status"] == 503 and first["ok"] is False
    assert first["problems"] == ["lag keeps growing"]
    assert (first["lag"], first["partitions"], first["dead_letters"]) == (12_500, 2, 3)
    assert first["last_poll_age_s"] == 0.4 and first["restarts"] is None
    assert second["reachable"] is False and second["problems"] == ["not answering: [Errno 111] Connection refused"]


def test_the_table_names_the_problem(lagging: SelfMetricsServer) -> None:
    code, out = run("--url", lagging.url)
    assert code == 1 and "lag keeps growing" in out and "12,500 (2 partitions)" in out


def test_a_run_file_of_a_dead_vigil_up_is_not_a_running_stack(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    services = {"analytics": {"url": "http://127.0.0.1:1", "state": "up", "restarts": 0}}
    (tmp_path / "run" / "services.json").write_text(json.dumps({"pid": gone.pid, "services": services}))
    config = tmp_path / "vigil.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    code, _ = run("-c", str(config))
    assert code == 2
    (tmp_path / "run" / "services.json").write_text(json.dumps({"pid": os.getpid(), "services": services}))
    code, out = run("-c", str(config), "--json")
    assert code == 1 and json.loads(out)["services"][0]["problems"] == ["not answering: [Errno 111] Connection refused"]
