"""The live ``peers`` stage on the bus-free engine: a GPU unlike its node siblings pages once, named;
what all siblings share (the hour, a new job), a GPU's lifelong place in the chassis and an idle GPU
on a shared node do not; state survives a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.stages.engine import Engine

from vigil.bus import TopicPartition
from vigil.catalog import GPU_POWER, GPU_SM_CLOCK, GPU_TEMPERATURE, GPU_UTILIZATION
from vigil.errors import ConfigError
from vigil.events import Detection, TelemetryBatch, series_key

T0 = 1_767_225_600.0
GPUS = 8
METRICS = (GPU_UTILIZATION, GPU_TEMPERATURE, GPU_SM_CLOCK, GPU_POWER)
Bend = Callable[[float, np.ndarray], None]  # (seconds since start, (GPUS, METRICS) values) -> in place


def engine(**overrides: Any) -> Engine:
    return Engine(AnalyticsConfig.model_validate({"stages": ["peers"], **overrides}))


def node(seconds: int, bend: Bend | None = None, seed: int = 0, host: str = "h1") -> list[TelemetryBatch]:
    """One batch per second of an 8-GPU node running one job: each GPU a little warmer or cooler
    for life (its slot in the chassis), every GPU following the same afternoon drift."""
    rng = np.random.default_rng(seed)
    offset = np.linspace(-4.0, 6.0, GPUS)  # the rear GPUs run warmer, always
    series = tuple(series_key(m, {"gpu_index": str(g)}) for g in range(GPUS) for m in METRICS)
    out = []
    for s in range(seconds):
        drift = 8.0 * s / max(seconds, 1)  # the whole node warms by 8 °C over the run
        v = np.empty((GPUS, len(METRICS)))
        v[:, 0] = np.clip(0.95 + 0.01 * rng.standard_normal(GPUS), 0, 1)
        v[:, 1] = 62.0 + offset + drift + 0.5 * rng.standard_normal(GPUS)
        v[:, 2] = 1.98e9 - np.abs(rng.standard_normal(GPUS)) * 1.5e7
        v[:, 3] = 650.0 * (1 + 0.015 * rng.standard_normal(GPUS))
        if bend is not None:
            bend(float(s), v)
        out.append(TelemetryBatch(host, "c1", np.array([T0 + s]), series, v.reshape(1, -1)))
    return out


def feed(eng: Engine, batches: list[TelemetryBatch], per_poll: int = 5) -> list[Detection]:
    found: list[Detection] = []
    for i in range(0, len(batches), per_poll):
        found += eng.observe_telemetry([(0, b) for b in batches[i : i + per_poll]])
    return found


def hot_gpu3(start: float, stop: float, add: float = 20.0) -> Bend:
    def bend(s: float, v: np.ndarray) -> None:
        if start <= s < stop:
            v[3, 1] += add

    return bend


def test_a_node_that_warms_together_with_gpus_in_their_usual_places_never_pages() -> None:
    assert feed(engine(), node(900, seed=1)) == []


def test_a_gpu_hotter_than_its_siblings_fires_once_named_and_resolves() -> None:
    found = feed(engine(), node(400, hot_gpu3(200, 300), seed=2))
    assert [(d.labels["alertname"], d.labels["gpu_index"], d.decision) for d in found] == [
        ("GpuUnlikeSiblings", "3", "firing"),
        ("GpuUnlikeSiblings", "3", "resolved"),
    ]
    fire, resolve = found
    assert 200 <= fire.ts - T0 <= 205  # min_hits 3 of 5
    assert 300 <= resolve.ts - T0 <= 315  # clear_after 10 calm samples
    r = fire.reason
    assert r["feature"] == series_key(GPU_TEMPERATURE, {"gpu_index": "3"})
    assert r["detector"] == "peer_gpu" and r["calibrated"] > 6
    assert r["value"] - r["sibling_median"] > 15  # the reason carries the comparison, in °C
    assert "airflow" in r["action"] and "sibling median" in fire.summary


def test_a_throttled_clock_fires_on_the_clock_series() -> None:
    def slow(s: float, v: np.ndarray) -> None:
        if s >= 120:
            v[5, 2] *= 0.65

    found = feed(engine(), node(200, slow, seed=3))
    assert [(d.labels["gpu_index"], d.decision) for d in found] == [("5", "firing")]
    assert found[0].reason["feature"] == series_key(GPU_SM_CLOCK, {"gpu_index": "5"})
    assert found[0].reason["relative_difference"] < -0.3  # a third below its siblings


def test_an_idle_gpu_on_a_shared_node_is_not_compared() -> None:
    def idle(s: float, v: np.ndarray) -> None:
        if s >= 100:  # GPU 6 leaves the job: no load, cooler, a third of the power
            v[6, 0], v[6, 1], v[6, 3] = 0.0, v[6, 1] - 25.0, 90.0

    assert feed(engine(), node(300, idle, seed=4)) == []


def test_an_idle_gpu_is_compared_once_the_gate_is_widened() -> None:
    def idle(s: float, v: np.ndarray) -> None:
        if s >= 100:
            v[6, 0], v[6, 1], v[6, 3] = 0.0, v[6, 1] - 25.0, 90.0

    found = feed(engine(peers={"busy_tolerance": 1.0}), node(300, idle, seed=4))
    assert [(d.labels["gpu_index"], d.decision) for d in found] == [("6", "firing")]


def test_two_gpus_are_too_few_to_compare() -> None:
    def two(s: float, v: np.ndarray) -> None:
        v[2:] = np.nan  # six GPUs report nothing
        if s >= 100:
            v[0, 1] += 30.0

    assert feed(engine(), node(200, two, seed=5)) == []


def test_a_restarted_process_keeps_each_gpu_place_and_an_open_alert() -> None:
    warm, tp = engine(), TopicPartition("vigil.telemetry.v1", 0)
    batches = node(400, hot_gpu3(200, 300), seed=6)
    fired = feed(warm, batches[:250])
    assert [d.decision for d in fired] == ["firing"]
    cold = engine()
    cold.restore(tp, "telemetry", warm.snapshot(tp, "telemetry"))
    t = cold.slots
    slot = t.slot(0, "c1", "h1", series_key(GPU_TEMPERATURE, {"gpu_index": "7"}))
    assert t.col("p_off_n")[slot] > 200 and t.col("p_off_mean")[slot] > 0.04  # GPU 7 runs ~6 % warm, learnt
    rest = feed(cold, batches[250:])
    assert [(d.labels["gpu_index"], d.decision) for d in rest] == [("3", "resolved")]  # no second page


@pytest.mark.parametrize(("key", "value"), [("min_peers", 2), ("busy_tolerance", 0.0), ("warmup", 1), ("mystery", 1)])
def test_bad_peers_config_fails_naming_the_key(key: str, value: Any) -> None:
    from vigil.config import validate

    with pytest.raises(ConfigError, match=rf"analytics\.peers\.{key}"):
        validate(AnalyticsConfig, {"peers": {key: value}}, "analytics")
