"""``vigil up``'s canary, end to end as processes on the embedded broker: the simulated serving model
on four nodes, probed per node by ``vigil canary``; a simulator fault of kind ``sdc`` (silent data
corruption: nothing in the telemetry) on node-02 is caught by the canary alone, pages as
``CanaryFailed`` naming the host, and the ``canary-serving-remove`` runbook takes node-02 out of
serving through ``oip.unload``. The run report and the live view show each node's canary status."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack
from vigil.cli.up import _render

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def config(tmp_path: Path) -> VigilConfig:
    return VigilConfig.model_validate({
        "data_dir": str(tmp_path), "log_level": "info",
        "sim": {"nodes": 4, "faults": [{"kind": "sdc", "at": 6, "duration": 300, "host": "node-02", "gpu_index": 3}]},
        "canary": {"simulated": {"interval": 1.0, "window": 3}},
        "alerting": {"notifiers": [{"type": "remediation"}],
                     "remediation": {"enabled": True, "mode": "execute", "verify": {"watch": False}}},
    })


def done(report: dict[str, Any]) -> bool:
    rows = {r["target"]: r for r in report["canary"]}
    node = rows.get("sim-classifier@node-02", {})
    return node.get("verdict") == "fail" and node.get("serving") is False


def test_vigil_up_catches_a_corrupting_gpu_by_its_answers_and_takes_it_out_of_serving(tmp_path: Path) -> None:
    stack = Stack(config(tmp_path), ephemeral=True).start()
    try:
        assert "canary" in stack.services()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not done(stack.report()):
            assert stack.supervisor.gave_up is None
            stack.supervise()
            time.sleep(1)
        health = stack.healthz("canary")
        console = Console(record=True, width=160)
        console.print(_render(stack, deque()))
        view = console.export_text()
    finally:
        stack.stop()
    report = stack.report()
    rows = {r["target"]: r for r in report["canary"]}
    assert done(report), (report["canary"], (tmp_path / "logs").glob("*.log"))
    for node in ("node-00", "node-01", "node-03"):
        assert rows[f"sim-classifier@{node}"]["verdict"] == "pass" and rows[f"sim-classifier@{node}"]["serving"]
    [sdc] = [f for f in report["faults"] if f["kind"] == "sdc"]
    assert sdc["detected"] and sdc["alerts"] == ["CanaryFailed"]  # the canary caught it, nothing else did
    assert health is not None and health["verdicts"]["sim-classifier@node-02"] == "fail"
    [line] = [row for row in view.splitlines() if "sim-classifier@node-02" in row]
    assert "fail" in line and line.rstrip(" │").endswith("out"), line
