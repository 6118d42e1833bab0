"""`vigil bench reporter` measures what it says: every timed call is published, none dropped."""

from __future__ import annotations

import pytest

from vigil.bus.memory import MemoryBus
from vigil.cli.bench_reporter import report_calls, torch_loop


def test_report_calls_times_every_call_and_publishes_them_all() -> None:
    row = report_calls(MemoryBus(), 2000, 0.5, "float")
    assert row["calls"] == 2000 and row["dropped"] == 0 and row["published"] == 2000 and row["all_published"]
    assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]


def test_the_torch_loop_runs_both_arms_and_reports_every_step_of_one() -> None:
    pytest.importorskip("torch")
    result = torch_loop(MemoryBus(), steps=40, block=20)
    assert result["published"] == 40 and result["dropped"] == 0
    assert result["step_ms_p50_without"] > 0 and result["step_ms_p50_with"] > 0
