"""Supervision on a real ``Stack``: a kill -9'd service and broker come back, counted; a crash loop ends the run.

The stack is durable (Tansu on localbucket S3 under the test's folder), as ``vigil up`` runs by
default, so the broker restart is on the same storage and the records written before it survive.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vigil.cli.chaos import read_back
from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack
from vigil.codec import decode
from vigil.events import TelemetryBatch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL_FLEET = {"nodes": 2, "spare_nodes": 0, "gpus_per_node": 2, "schedule": "none"}


def supervise_until(stack: Stack, done: Callable[[], bool], timeout_s: float) -> None:
    """Drive supervision as ``vigil up`` does until ``done`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.supervise()
        assert stack.supervisor.gave_up is None, stack.supervisor.status()
        if done():
            return
        time.sleep(0.25)
    raise AssertionError(f"not done after {timeout_s}s: {stack.supervisor.status()}")


def consuming(stack: Stack, name: str) -> bool:
    health = stack.healthz(name)
    return bool(health and health.get("ok") and health.get("assigned"))


def test_kill9_of_a_service_and_of_the_broker_are_restarted_and_counted(tmp_path: Path) -> None:
    config = VigilConfig.model_validate(
        {"data_dir": str(tmp_path), "sim": SMALL_FLEET, "supervision": {"backoff": "0.5s"}}
    )
    stack = Stack(config).start()
    try:
        supervise_until(stack, lambda: consuming(stack, "analytics") and stack.view.newest_sample() > 0, 90)
        old_pid = stack.processes.children["analytics"].proc.pid
        stack.kill("analytics")
        supervise_until(
            stack, lambda: stack.supervisor.restarts["analytics"] == 1 and consuming(stack, "analytics"), 90
        )
        assert stack.processes.children["analytics"].proc.pid != old_pid

        assert stack.broker is not None
        bootstrap, tansu_pid = stack.broker.bootstrap, stack.broker.pids()["tansu"]
        stack.kill("broker")
        killed_at = time.time()
        supervise_until(
            stack, lambda: stack.supervisor.restarts["broker"] == 1 and stack.view.newest_sample() > killed_at + 1, 120
        )
        assert stack.broker.bootstrap == bootstrap and stack.broker.pids()["tansu"] != tansu_pid
        stamps = [
            float(batch.ts[0])
            for value in read_back(stack.effective.kafka, [stack.effective.topics().telemetry])
            if isinstance(batch := decode(value), TelemetryBatch)
        ]
        assert min(stamps) < killed_at - 5 < killed_at + 1 < max(stamps)  # same storage: the old records are there
    finally:
        stack.stop()
    report = stack.report()
    assert report["gave_up"] is None
    assert report["restarts"]["broker"] == 1 and report["restarts"]["analytics"] >= 1
    # canary: vigil up probes its simulated serving model
    assert set(report["restarts"]) == {"broker", "alerting", "analytics", "sim", "canary"}


def test_vigil_up_gives_up_on_a_crash_loop_stops_everything_and_exits_1(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("alerting cannot create its database under a file")
    config = tmp_path / "vigil.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"sim: {json.dumps(SMALL_FLEET)}\n"
        f"alerting: {{db_path: {blocker / 'alerts.db'}}}\n"
        "supervision: {backoff: 0.2s, max_backoff: 0.2s, max_restarts: 2, window: 5m}\n"
    )
    report = tmp_path / "run.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "up", "-c", str(config), "--duration", "300", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 200  # it ended on giving up, not at the end of --duration
    assert "gave up on alerting" in done.stderr
    result = json.loads(report.read_text())
    assert result["gave_up"] == "alerting" and result["restarts"]["alerting"] == 2
    # Everything was stopped by PID: no process is left running from this test's folder.
    assert not (tmp_path / "data" / "broker" / "tansu.pid").exists()
    leftovers = [p for p in Path("/proc").glob("[0-9]*/cmdline") if _mentions(p, str(tmp_path))]
    assert leftovers == []


def _mentions(cmdline: Path, text: str) -> bool:
    try:
        return text.encode() in cmdline.read_bytes()
    except OSError:  # the process ended while we looked
        return False
