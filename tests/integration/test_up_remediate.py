"""``vigil up --remediate`` end to end, as a user runs it: the whole platform on the embedded broker, a
GPU falls off the bus, and with no person involved the robot drains the node, moves the job's ranks
to a spare, reboots the node, verifies it and returns it to service; the report says so.

The XID 79 lasts longer than the run (a person would fix it only after 10 minutes), so only the robot
can have brought the node back. The demo runbook's 60 s hold bounds the run at about two minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAULT = {"kind": "xid79", "at": 10, "duration": 600, "host": "node-05", "gpu_index": 6}


def test_an_xid79_is_remediated_and_its_node_returned_to_service(tmp_path: Path) -> None:
    config = {
        "data_dir": str(tmp_path / "data"),
        "log_level": "info",
        "sim": {"faults": [FAULT], "reboot_time": 10},
    }
    (tmp_path / "vigil.yaml").write_text(yaml.safe_dump(config))
    report = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "vigil.cli", "up", "-c", "vigil.yaml", "--remediate", "--duration", "110",
           "--report", str(report), "--ephemeral"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())

    (row,) = result["faults"]
    assert row["kind"] == "xid79" and row["detected"] and "GpuXidFatal" in row["alerts"]
    assert row["remediated"] and row["repaired_by"] == "fleet.reboot" and row["run_state"] == "succeeded"
    assert row["injected_at"] < row["drained_at"] < row["repaired_at"] < row["returned_at"] == row["recovered_at"]
    assert row["returned_at"] - row["drained_at"] >= 60.0  # the verification hold before the resume
    assert row["time_to_recover_s"] == pytest.approx(row["recovered_at"] - row["injected_at"], abs=1e-3)

    (run,) = result["remediation"]["runs"]
    assert result["remediation"]["mode"] == "execute" and run["runbook"] == "xid-79-fallen-off-bus"
    assert [(s["name"], s["state"]) for s in run["steps"]] == [
        ("drain", "succeeded"), ("requeue", "succeeded"), ("reboot", "succeeded"), ("resume", "succeeded")
    ]
    assert "node-08" in run["steps"][1]["detail"]  # job node 5's ranks moved to the first spare
    # The job trained on: one restart from its checkpoint, instead of waiting 10 minutes for a person.
    training = result["training"]["job-0"]
    assert training["restarts"] == 1 and result["ettr"] == training["ettr"] and result["ettr"] > 0.5
