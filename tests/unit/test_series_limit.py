"""Series limits where slots are allocated (SlotTable.admit) and the one alert per host (Engine)."""

from __future__ import annotations

import numpy as np
import pytest
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.stages.engine import Engine
from vigil.analytics.stages.limits import Refusal, SeriesBudget
from vigil.analytics.stages.slots import SlotTable, build_frame

from vigil.bus import TopicPartition
from vigil.events import TelemetryBatch

T0 = 1_767_225_600.0


def batch(host: str, names: list[str], t: float = 0.0, ticks: int = 1) -> TelemetryBatch:
    values = np.arange(ticks * len(names), dtype=float).reshape(ticks, len(names))
    return TelemetryBatch(host, "c1", T0 + t + np.arange(ticks, dtype=float), tuple(names), values)


def keys(n: int, prefix: str = "m") -> list[str]:
    return [f'{prefix}{{i="{i}"}}' for i in range(n)]


def test_a_host_over_its_limit_keeps_its_first_series_and_the_rest_are_cut_and_reported() -> None:
    table = SlotTable(budget=SeriesBudget(per_host=5))
    slots, cut = table.admit(0, batch("h1", keys(8), ticks=2))
    assert slots.size == 5 and cut.series == tuple(keys(5))
    np.testing.assert_array_equal(cut.values, np.arange(16.0).reshape(2, 8)[:, :5])
    assert table.take_refusals() == [Refusal("c1", "h1", "host", 5, 3, 6, T0 + 1)]
    again_slots, again = table.admit(0, batch("h1", keys(8), t=2))  # the cached set is cut the same way
    np.testing.assert_array_equal(again_slots, slots)
    assert again.series == tuple(keys(5)) and [r.series for r in table.take_refusals()] == [3]
    assert table.in_use == 5
    frame = build_frame(table, [table.admit(0, batch("h1", keys(8), t=3))])
    assert frame.size == 5  # the frame the detectors see holds only the admitted series


def test_a_known_host_within_its_limit_costs_nothing_and_reports_nothing() -> None:
    table = SlotTable(budget=SeriesBudget(per_host=5))
    first = batch("h1", keys(5))
    slots, same = table.admit(0, first)
    assert same is first and slots.size == 5
    assert table.admit(0, batch("h2", keys(5)))[0].size == 5  # the limit is per host
    assert table.take_refusals() == []


def test_the_partition_limit_counts_every_host_of_the_partition() -> None:
    table = SlotTable(budget=SeriesBudget(per_host=10, per_partition=4))
    assert table.admit(0, batch("h1", keys(3)))[0].size == 3
    slots, cut = table.admit(0, batch("h2", keys(3)))
    assert slots.size == 1 and cut.series == tuple(keys(1))
    assert [(r.host, r.scope, r.limit, r.series) for r in table.take_refusals()] == [("h2", "partition", 4, 2)]
    assert table.admit(1, batch("h3", keys(3)))[0].size == 3  # another partition has its own count


def test_releasing_a_partition_gives_its_budget_back() -> None:
    table = SlotTable(budget=SeriesBudget(per_host=4))
    table.admit(0, batch("h1", keys(6)))
    table.release(0)
    assert table.in_use == 0 and table.budget.host_series("h1") == 0
    slots, cut = table.admit(0, batch("h1", keys(3, "n")))
    assert slots.size == 3 and len(cut.series) == 3


def test_a_snapshot_restores_within_the_budget_with_its_columns_aligned() -> None:
    big = SlotTable()
    slots, _ = big.admit(0, batch("h1", keys(10)))
    big.col("last_value")[slots] = np.arange(10.0)
    blob = big.export(slots, ["last_value"])
    small = SlotTable(budget=SeriesBudget(per_host=4))
    restored = small.import_(0, blob)
    assert restored.size == 4 and [small.series_of(s) for s in restored.tolist()] == keys(4)
    np.testing.assert_array_equal(small.col("last_value")[restored], np.arange(4.0))


def engine(**limits: float) -> Engine:
    return Engine(AnalyticsConfig.model_validate({"stages": ["zscore"], "series_limit": limits}))


def test_one_alert_per_host_and_episode_naming_host_and_limit_then_resolved() -> None:
    eng = engine(per_host=6, clear_after=60)
    fired = eng.observe_telemetry([(0, batch("h1", keys(10)))])
    assert [(d.labels["alertname"], d.labels["host"], d.decision) for d in fired] == [
        ("SeriesLimitExceeded", "h1", "firing")
    ]
    assert fired[0].reason["limit"] == 6 and fired[0].reason["scope"] == "host"
    assert "h1 exceeded the per-host series limit of 6" in fired[0].summary
    assert eng.observe_telemetry([(0, batch("h1", keys(12), t=10))]) == []  # still over: no second page
    assert eng.take_dropped() == {"host": 4 + 6}
    assert eng.observe_telemetry([(0, batch("h1", keys(6), t=69))]) == []  # 59 s without a refusal
    resolved = eng.observe_telemetry([(0, batch("h1", keys(6), t=70))])
    assert [(d.labels["host"], d.decision) for d in resolved] == [("h1", "resolved")]
    again = eng.observe_telemetry([(0, batch("h1", keys(7), t=80))])
    assert [d.decision for d in again] == ["firing"]  # a new episode


def test_an_open_episode_survives_a_restart_and_still_resolves() -> None:
    first = engine(per_host=6, clear_after=60)
    tp = TopicPartition("vigil.telemetry.v1", 0)
    first.observe_telemetry([(first.pid(tp), batch("h1", keys(10)))])
    body = first.snapshot(tp, "telemetry")
    second = engine(per_host=6, clear_after=60)
    second.restore(tp, "telemetry", body)
    assert second.slots.in_use == 6
    resolved = second.observe_telemetry([(second.pid(tp), batch("h1", keys(6), t=61))])
    assert [(d.labels["host"], d.decision) for d in resolved] == [("h1", "resolved")]


@pytest.mark.parametrize("key", ["per_host", "per_partition"])
def test_a_limit_below_one_is_a_config_error_naming_the_key(key: str) -> None:
    from vigil.config import validate
    from vigil.errors import ConfigError

    with pytest.raises(ConfigError, match=f"series_limit.{key}"):
        validate(AnalyticsConfig, {"series_limit": {key: 0}})
