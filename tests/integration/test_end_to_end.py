"""The whole pipeline as processes on the real broker, with analytics killed -9 mid-run.

Every injected fault must still page, and no alert may page twice: detections replayed after the
crash are deduplicated by fingerprint, and the restarted analytics resumes from its snapshot.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEDULE = [
    {"kind": "xid48", "at": 8, "duration": 20, "host": "node-02", "gpu_index": 5},
    {"kind": "xid79", "at": 16, "duration": 8, "host": "node-05", "gpu_index": 6},
    {"kind": "loss_nan", "at": 38, "duration": 10},
    {"kind": "thermal", "at": 45, "duration": 30, "host": "node-01", "gpu_index": 2},
]


def test_kill9_of_analytics_loses_no_fault_and_pages_none_twice(tmp_path: Path) -> None:
    config = VigilConfig.model_validate(
        {"data_dir": str(tmp_path), "log_level": "info", "sim": {"faults": SCHEDULE, "nodes": 8}}
    )
    stack = Stack(config, ephemeral=True).start()
    try:
        time.sleep(22)  # both XIDs injected, analytics mid-stream
        assert stack.processes.alive("analytics")
        stack.processes.kill("analytics")
        time.sleep(2)
        stack.spawn("analytics")
        deadline = time.monotonic() + 80
        while time.monotonic() < deadline:
            report = stack.report()
            kinds = {r["kind"] for r in report["faults"] if r["detected"]}
            if kinds >= {"xid48", "xid79", "loss_nan", "thermal"}:
                break
            time.sleep(2)
        time.sleep(3)  # let any duplicate page arrive before judging
    finally:
        stack.stop()
    report = stack.report()
    missed = [r for r in report["faults"] if not r["detected"]]
    assert not missed, f"faults that never paged: {missed}"
    assert {r["kind"] for r in report["faults"]} == {"xid48", "xid79", "loss_nan", "thermal"}
    # An escalation (same episode, higher severity) is a second notification, not a second page.
    pages = [n for n in stack.receiver.snapshot() if n.status == "firing" and n.reason != "escalated"]
    firing = Counter(n.fingerprint for n in pages)
    twice = {fp: n for fp, n in firing.items() if n > 1}
    assert not twice, f"alerts paged more than once: {twice}"
