"""The agent's schedule: wall-clock aligned ticks, per-collector intervals, jitter without drift."""

from __future__ import annotations

import random

import pytest
from vigil.collectors.agent.config import CollectorSettings
from vigil.collectors.agent.schedule import Schedule, first_tick


def runs(schedule: Schedule, start: float, tick: float, ticks: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for k in range(ticks):
        slot = start + k * tick
        for name in schedule.due(slot):
            out.setdefault(name, []).append(round(slot - start, 6))
    return out


def test_first_tick_is_the_next_multiple_of_the_tick() -> None:
    assert first_tick(100.2, 1.0) == 101.0
    assert first_tick(100.0, 1.0) == 100.0
    assert first_tick(100.1, 0.25) == 100.25


def test_each_collector_runs_on_its_own_interval() -> None:
    specs = {"fast": CollectorSettings(interval=1), "slow": CollectorSettings(interval=5)}
    got = runs(Schedule(specs, 1000.0, random.Random(0)), 1000.0, 1.0, 12)
    assert got["fast"] == [float(k) for k in range(12)]
    assert got["slow"] == [0.0, 5.0, 10.0]


def test_an_interval_that_is_not_a_multiple_of_the_tick_runs_on_the_next_tick_without_drift() -> None:
    specs = {"c": CollectorSettings(interval=2.5)}
    got = runs(Schedule(specs, 0.0, random.Random(0)), 0.0, 1.0, 11)
    assert got["c"] == [0.0, 3.0, 5.0, 8.0, 10.0]  # due 0, 2.5, 5, 7.5, 10


def test_jitter_delays_each_run_within_bounds_and_keeps_the_rate() -> None:
    specs = {"smart": CollectorSettings(interval=60, jitter=20)}
    got = runs(Schedule(specs, 0.0, random.Random(7)), 0.0, 1.0, 600)["smart"]
    assert len(got) == 10  # one run per interval, no drift over ten intervals
    offsets = [t - 60 * k for k, t in enumerate(got)]
    assert all(0 <= o <= 20 for o in offsets)
    assert len(set(offsets)) > 3  # drawn per run, not a fixed phase


def test_a_stalled_scheduler_skips_missed_runs_instead_of_bursting() -> None:
    specs = {"c": CollectorSettings(interval=1)}
    schedule = Schedule(specs, 0.0, random.Random(0))
    assert schedule.due(0.0) == ["c"]
    assert schedule.due(30.0) == ["c"]  # 29 runs missed: one run now
    assert schedule.due(30.0) == []
    assert schedule.due(31.0) == ["c"]


@pytest.mark.parametrize("tick", [0.1, 0.25, 1.0])
def test_float_ticks_do_not_lose_runs(tick: float) -> None:
    specs = {"c": CollectorSettings(interval=tick)}
    got = runs(Schedule(specs, 1_767_225_600.0, random.Random(0)), 1_767_225_600.0, tick, 1000)
    assert len(got["c"]) == 1000
