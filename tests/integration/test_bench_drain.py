"""``vigil bench pipeline --analytics 2 --training``, short: two analytics processes drain a backlog on the
real broker, one is SIGKILLed at 40%, the survivor takes its partitions from its snapshots, and the
measuring pager sees every fault paged once and none twice. The command runs as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def test_two_processes_drain_the_backlog_and_the_kill_loses_and_doubles_no_page() -> None:
    command = [
        sys.executable,
        "-m",
        "vigil.cli",
        "bench",
        "pipeline",
        "--json",
        "--seconds",
        "4",
        "--latency-seconds",
        "0",
        "--training",
        "--analytics",
        "2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)["throughput"]
    first, second = doc["processes"]
    assert (first["name"], second["name"]) == ("analytics-0", "analytics-1")
    assert first["killed_at_s"] is not None and second["killed_at_s"] is None
    assert first["samples"] > 0 and second["samples"] > 0  # both worked: the group split the partitions
    assert second["restored_after_kill"] > 0  # it took the dead one's partitions warm, from their snapshots
    # Everything produced was scored; what the killed process had scored since its last checkpoint
    # was scored again by the survivor, never less.
    assert doc["samples_scored"] >= doc["samples_produced"] > 0
    assert doc["steps_scored"] >= doc["steps_produced"] > 0  # every rank of every step, in batches
    assert doc["samples_per_s"] > 0 and doc["steps_per_s"] > 0
    pages = doc["fault_pages"]
    assert pages["faults"] >= 2 and pages["lost"] == 0 and pages["paged_twice"] == 0, pages
    assert pages["paged_once"] == pages["faults"]
