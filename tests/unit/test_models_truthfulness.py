"""Telemetry truthfulness: the vectorised checks, the frozen model, and the live detector on built frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from vigil.analytics.config import TruthfulnessConfig
from vigil.analytics.models import truthfulness as tf
from vigil.analytics.stages.base import TelemetryStage
from vigil.analytics.stages.slots import SlotTable, build_frame
from vigil.analytics.stages.truthfulness import TruthfulnessStage

from vigil.catalog import GPU_POWER, GPU_TEMPERATURE, GPU_UTILIZATION, HOST_LOAD1
from vigil.events import Detection, TelemetryBatch, series_key

T0 = 1_767_225_600.0
GPUS = 4
SERIES = (
    *(series_key(m, {"gpu_index": str(g)}) for g in range(GPUS) for m in (GPU_UTILIZATION, GPU_POWER, GPU_TEMPERATURE)),
    HOST_LOAD1,
)


def test_frozen_evidence_grows_on_a_series_that_used_to_change_and_never_on_a_flat_counter() -> None:
    rng = np.random.default_rng(0)
    noisy = np.r_[rng.normal(60, 1, 100), np.full(40, 61.5)]  # freezes at row 100
    counter = np.zeros(140)  # an ECC counter that never moved
    prev, rate = np.full(2, np.nan), np.zeros(2)
    run, seen = np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    evidence = []
    for x in np.column_stack([noisy, counter]):
        prev, run, rate, seen = tf.frozen_step(prev, run, rate, seen, x, 0.05)
        evidence.append(tf.frozen_evidence(run, rate))
    ev = np.array(evidence)
    assert ev[:100, 0].max() < 1 and ev[110, 0] > 9 and ev[-1, 0] > ev[110, 0]
    assert ev[:, 1].max() == 0.0 and run[1] == 139  # a long run, but no evidence: it never changed
    assert rate[0] > 0.9  # the rate still describes the series before the freeze


def test_gap_ewma_and_staleness() -> None:
    interval, last = np.full(2, np.nan), np.full(2, np.nan)
    learn = np.ones(2, dtype=bool)
    for t in range(10):
        interval, last = tf.gap_step(interval, last, np.array([T0 + 2 * t, T0 + 10 * t]), 0.2, learn)
    np.testing.assert_allclose(interval, [2.0, 10.0])
    outage, _ = tf.gap_step(interval, last, np.array([T0 + 100, T0 + 200]), 0.2, np.array([False, True]))
    np.testing.assert_allclose(outage, [2.0, 10.0 + 0.2 * (110 - 10)])  # an outage is not learnt
    now = T0 + 18 + 11
    assert tf.stale(last, interval, now, 5.0, 1.0, 15.0).tolist() == [True, False]  # 11 s > 5 x 2 s
    assert not tf.stale(np.array([np.nan]), np.array([np.nan]), now, 5.0, 1.0, 15.0).any()


def test_silent_zero_needs_busy_siblings() -> None:
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    util = np.array([0.0, 0.97, 0.95, 0.96, 0.0, 0.02, 0.01, 0.0])  # host 1 is idle: no finding
    zero, med = tf.silent_zero(group, util, np.full(8, 0.01), np.full(8, 0.5))
    assert zero.tolist() == [True] + [False] * 7 and med[0] > 0.9


def test_frozen_model_scores_the_strongest_run() -> None:
    model = tf.FrozenDetector(["a", "b"], warmup=10)
    rng = np.random.default_rng(1)
    model.process_many(np.column_stack([rng.normal(size=50), rng.normal(size=50)]))
    frozen = np.column_stack([np.full(20, 3.0), rng.normal(size=20)])
    scores = model.process_many(frozen)
    # a series that changed every sample: each repeat is 3 decimal digits of evidence (rate capped at 0.999)
    np.testing.assert_allclose(scores[:5], [0, 3, 6, 9, 12], atol=1e-6)
    assert scores[-1] == max(scores)


# -- the live detector on frames built by hand


class Host:
    """One host's series, tick by tick; ``mutate`` bends a tick's values or drops series."""

    def __init__(self, name: str, seed: int) -> None:
        self.name, self.rng = name, np.random.default_rng(seed)

    def batch(self, t: float, mutate: Callable[[dict[str, float]], object] | None = None) -> TelemetryBatch | None:
        values = {}
        for key in SERIES:
            base = {GPU_UTILIZATION: 0.95, GPU_POWER: 600.0, GPU_TEMPERATURE: 65.0}.get(key.partition("{")[0], 40.0)
            values[key] = base * (1 + 0.01 * self.rng.normal())
        if mutate:
            mutate(values)
        if not values:
            return None
        keys = tuple(values)
        return TelemetryBatch(self.name, "c1", np.array([t]), keys, np.array([[values[k] for k in keys]]))


def run(
    det: TruthfulnessStage,
    table: SlotTable,
    hosts: list[Host],
    ticks: range,
    mutate: dict[str, Callable[[dict[str, float]], Any]],
) -> list[tuple[int, Detection]]:
    out = []
    for k in ticks:
        batches = [b for h in hosts if (b := h.batch(T0 + k, mutate.get(h.name) if k >= 0 else None)) is not None]
        frame = build_frame(table, [table.admit(0, b) for b in batches])
        out += [(k, d) for d in det.observe_frame(frame)]
    return out


def fresh() -> tuple[TruthfulnessStage, SlotTable, list[Host]]:
    table = SlotTable()
    det = TruthfulnessStage(TruthfulnessConfig(), table)
    hosts = [Host("a", 1), Host("b", 2)]
    run(det, table, hosts, range(-60, 0), {})  # warm: intervals, change rates
    return det, table, hosts


def names(found: list[tuple[int, Detection]]) -> list[tuple[int, str, str, str, str]]:
    return [(k, d.labels["alertname"], d.decision, d.labels["host"], d.labels.get("gpu_index", "")) for k, d in found]


def test_it_is_a_telemetry_detector_and_a_healthy_fleet_raises_nothing() -> None:
    det, table, hosts = fresh()
    assert isinstance(det, TelemetryStage)
    assert run(det, table, hosts, range(0, 300), {}) == []


def test_a_gpu_reading_zero_while_its_siblings_work_fires_and_resolves() -> None:
    det, table, hosts = fresh()

    def zero_gpu2(v: dict[str, float]) -> None:
        v[series_key(GPU_UTILIZATION, {"gpu_index": "2"})] = 0.0
        v[series_key(GPU_POWER, {"gpu_index": "2"})] = 0.0

    found = run(det, table, hosts, range(0, 10), {"b": zero_gpu2})
    found += run(det, table, hosts, range(10, 15), {})
    assert names(found) == [(2, "GpuSilentZero", "firing", "b", "2"), (10, "GpuSilentZero", "resolved", "b", "2")]
    assert set(found[0][1].reason["series"]) == {
        series_key(GPU_UTILIZATION, {"gpu_index": "2"}),
        series_key(GPU_POWER, {"gpu_index": "2"}),
    }


def test_a_frozen_temperature_fires_after_the_minimum_run() -> None:
    det, table, hosts = fresh()
    key = series_key(GPU_TEMPERATURE, {"gpu_index": "1"})
    found = run(det, table, hosts, range(0, 20), {"a": lambda v: v.__setitem__(key, 64.25)})
    assert names(found) == [(10, "TelemetryFrozen", "firing", "a", "1")]  # run 10 after the first 64.25
    assert found[0][1].reason["runs"][key] == {"value": 64.25, "run": 10}
    assert names(run(det, table, hosts, range(20, 22), {})) == [(20, "TelemetryFrozen", "resolved", "a", "1")]


def test_missing_gpu_stale_series_and_a_silent_host_are_told_apart() -> None:
    det, table, hosts = fresh()
    gpu3 = [k for k in SERIES if '"3"' in k]
    temp0 = series_key(GPU_TEMPERATURE, {"gpu_index": "0"})

    def drop(keys: list[str]) -> Callable[[dict[str, float]], object]:
        return lambda v: [v.pop(k) for k in keys]

    found = run(det, table, hosts, range(0, 10), {"a": drop([*gpu3, temp0])})
    # last samples at t=-1, expected every 1 s: stale once more than 5 s old, at t=5
    assert sorted(names(found)) == [(5, "GpuMissing", "firing", "a", "3"), (5, "TelemetryStale", "firing", "a", "0")]
    assert all(d.ts == T0 + 4 for _, d in found)  # decided at t=5, dated when they went stale
    stale = next(d for _, d in found if d.labels["alertname"] == "TelemetryStale")
    assert stale.reason["series"] == [temp0] and stale.severity == "warning"
    found = run(det, table, hosts, range(10, 20), {"a": drop([*gpu3, temp0]), "b": drop(list(SERIES))})
    assert names(found) == [(15, "HostTelemetryStale", "firing", "b", "")]  # not 4 GpuMissing: the host is gone
    assert found[0][1].ts == T0 + 14
    found = run(det, table, hosts, range(20, 22), {})
    assert all(d.ts == T0 + 20 for _, d in found)  # dated by the first sample back
    assert sorted(names(found)) == [
        (20, "GpuMissing", "resolved", "a", "3"),
        (20, "HostTelemetryStale", "resolved", "b", ""),
        (20, "TelemetryStale", "resolved", "a", "0"),
    ]


def test_a_series_silent_past_forget_after_is_dropped_and_its_alert_resolves() -> None:
    table = SlotTable()
    det = TruthfulnessStage(TruthfulnessConfig(forget_after=30), table)
    hosts = [Host("a", 1)]
    run(det, table, hosts, range(-20, 0), {})
    key = series_key(GPU_TEMPERATURE, {"gpu_index": "0"})
    found = run(det, table, hosts, range(0, 40), {"a": lambda v: v.pop(key)})
    assert names(found) == [(5, "TelemetryStale", "firing", "a", "0"), (30, "TelemetryStale", "resolved", "a", "0")]


def test_restored_columns_resume_without_paging_again() -> None:
    det, table, hosts = fresh()
    gpu3 = [k for k in SERIES if '"3"' in k]
    assert names(run(det, table, hosts, range(0, 8), {"a": lambda v: [v.pop(k) for k in gpu3]}))[0][1] == "GpuMissing"
    blob = table.export(table.slots_of(0), ["last_value", "last_ts", *det.columns()])
    table2 = SlotTable()
    det2 = TruthfulnessStage(TruthfulnessConfig(), table2)
    table2.import_(0, blob)
    det2.rebuild()
    assert run(det2, table2, hosts, range(8, 12), {"a": lambda v: [v.pop(k) for k in gpu3]}) == []
    assert names(run(det2, table2, hosts, range(12, 13), {})) == [(12, "GpuMissing", "resolved", "a", "3")]


def test_a_partition_read_ahead_of_another_does_not_make_the_other_look_stale() -> None:
    table = SlotTable()
    det = TruthfulnessStage(TruthfulnessConfig(), table)
    a, b = Host("a", 1), Host("b", 2)
    found = []
    for k in range(0, 100, 10):  # a catching-up consumer: host a's partition delivered 10 ticks ahead
        parts = [(0, x) for t in range(k, k + 10) if (x := a.batch(T0 + t)) is not None]
        parts += [(1, x) for t in range(k // 2, k // 2 + 5) if (x := b.batch(T0 + t)) is not None]
        found += det.observe_frame(build_frame(table, [table.admit(p, x) for p, x in parts]))
    assert found == []
    assert det.clock.tolist() == [T0 + 99, T0 + 49]
