"""``vigil canary run --json`` against a real HTTP fleet on loopback (the simulated serving model): one
round of every node, judged on that round alone; a node with silent data corruption fails its floor,
with the failing items and their answers, and the command exits 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner
from vigil.alerting.canary.simulated import ServingFleet, probe_document

from vigil.cli.app import build_app

pytestmark = pytest.mark.integration


def test_vigil_canary_run_json_names_the_corrupt_node_and_its_answers(tmp_path: Path) -> None:
    fleet = ServingFleet(["node-00", "node-01", "node-02"], latency_s=0.001).start()
    try:
        (tmp_path / "sim.yaml").write_text(yaml.safe_dump(probe_document(fleet, items=10)))
        healthy = CliRunner().invoke(build_app(), ["canary", "run", "--json", "-p", str(tmp_path / "sim.yaml")])
        fleet.corrupt("node-02")
        corrupt = CliRunner().invoke(build_app(), ["canary", "run", "--json", "-p", str(tmp_path / "sim.yaml")])
    finally:
        fleet.stop()
    assert healthy.exit_code == 0, healthy.output
    assert json.loads(healthy.output)["ok"] is True
    assert corrupt.exit_code == 1
    [probe] = json.loads(corrupt.output)["probes"]
    verdicts = {arm: j["verdict"] for arm, j in probe["judgements"].items()}
    assert verdicts == {"node-00": "pass", "node-01": "pass", "node-02": "fail"}
    bad = probe["judgements"]["node-02"]
    failing = bad["failing_items"]
    assert failing and all(f["answer"] and f["reason"].startswith("expected") for f in failing)
    assert "below the floor" in bad["reasons"][0]
    [result] = [r for r in probe["results"] if r["target"] == "sim-classifier@node-02"]
    assert result["node"] == "node-02" and result["passed"] < result["total"]
