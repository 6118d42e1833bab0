"""Telemetry detectors on the bus-free engine: the vectorised z-score against a per-sample
reference, step change, false-positive guard, threshold hold-down and counter-rate rules."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from vigil.analytics.config import AnalyticsConfig, ZScoreConfig
from vigil.analytics.stages.engine import Engine

from vigil.bus import TopicPartition
from vigil.events import Detection, TelemetryBatch, series_key

T0 = 1_767_225_600.0


def batch(host: str, series: list[str], ts: np.ndarray, values: np.ndarray) -> TelemetryBatch:
    return TelemetryBatch(host, "c1", np.asarray(ts, float), tuple(series), np.asarray(values, float))


def engine(**overrides: Any) -> Engine:
    return Engine(AnalyticsConfig.model_validate({"stages": ["zscore", "threshold"], **overrides}))


def feed(eng: Engine, polls: list[list[TelemetryBatch]]) -> list[Detection]:
    out: list[Detection] = []
    for poll in polls:
        out += eng.observe_telemetry([(0, b) for b in poll])
    return out


class Reference:
    """A deliberately plain per-sample z-score with the documented semantics."""

    def __init__(self, c: ZScoreConfig) -> None:
        self.c = c
        self.state: dict[tuple[str, str], dict[str, Any]] = {}

    def sample(self, host: str, key: str, ts: float, x: float) -> None:
        s = self.state.setdefault(
            (host, key), dict(n=0, mean=0.0, mad=0.0, hist=[], active=False, below=0, last=None, z=0.0)
        )
        y = x
        if key.partition("{")[0].endswith("_total"):
            prev, s["last"] = s["last"], (ts, x)
            y = math.nan if prev is None or ts <= prev[0] or x < prev[1] else (x - prev[1]) / (ts - prev[0])
        if not math.isfinite(y):
            return
        c = self.c
        z = 0.0
        if s["n"] >= c.warmup:
            z = (y - s["mean"]) / max(s["mad"] * 1.2533, c.rel_floor * abs(s["mean"]), c.abs_floor)
        exceed = abs(z) > c.threshold
        if not exceed or c.learn_on_anomaly:
            if s["n"] == 0:
                s["mean"], s["mad"] = y, 0.0
            else:
                a = max(c.alpha, 1 / (s["n"] + 1))
                d = y - s["mean"]
                s["mean"] += a * d
                s["mad"] += a * (abs(d) - s["mad"])
            s["n"] += 1
        s["hist"] = ([*s["hist"], exceed])[-c.window :]
        s["z"] = z
        if s["active"]:
            s["below"] = s["below"] + 1 if abs(z) < c.threshold / 2 else 0
            if s["below"] >= c.clear_after:
                s["active"], s["below"] = False, 0
        elif sum(s["hist"]) >= c.min_hits:
            s["active"], s["below"] = True, 0


def test_vectorised_zscore_equals_per_sample_reference_with_repeats_in_one_poll() -> None:
    rng = np.random.default_rng(7)
    series = [
        series_key(m, {"gpu_index": str(g)})
        for g in range(3)
        for m in ("gpu_power_watts", "gpu_temperature_celsius", "gpu_ecc_sbe_volatile_total")
    ]
    series.append("host_load1")
    eng, ref = engine(zscore={"warmup": 10}), Reference(ZScoreConfig(warmup=10))
    counters = np.array(["_total" in s for s in series])
    totals = np.zeros((2, len(series)))
    t = 0
    for _poll in range(12):
        poll = []
        for _rep in range(3):  # three consecutive batches of each host in one poll
            for h in range(2):
                n = int(rng.integers(1, 5))
                ts = T0 + t + np.arange(n)
                values = rng.normal(50, 3, size=(n, len(series)))
                values[rng.random(values.shape) < 0.05] = np.nan
                values[rng.random(values.shape) < 0.03] += 80  # spikes so the post-rule works too
                inc = np.cumsum(rng.integers(0, 3, size=(n, len(series))), axis=0)
                values[:, counters] = (totals[h] + inc)[:, counters]
                totals[h] = totals[h] + inc[-1]
                poll.append(batch(f"h{h}", series, ts, values))
            t += 5
        feed(eng, [poll])
        for b in poll:
            for i in range(b.ts.size):
                for j, key in enumerate(b.series):
                    ref.sample(b.host, key, float(b.ts[i]), float(b.values[i, j]))
    table = eng.slots
    for (host, key), s in ref.state.items():
        slot = table.slot(0, "c1", host, key)
        assert table.col("z_n")[slot] == s["n"], key
        assert np.isclose(table.col("z_mean")[slot], s["mean"]) and np.isclose(table.col("z_mad")[slot], s["mad"])
        assert np.isclose(table.col("z_last")[slot], s["z"])
        assert bool(table.col("z_active")[slot]) == s["active"] and table.col("z_below")[slot] == s["below"]
        bits = sum(int(b) << k for k, b in enumerate(reversed(s["hist"])))
        assert table.col("z_hist")[slot] == bits, key
    assert all(s["n"] > 10 for s in ref.state.values())
    assert any(any(s["hist"]) for s in ref.state.values())  # the spikes did exceed the threshold


def gaussian_polls(
    rng: np.random.Generator,
    n_series: int,
    seconds: int,
    per_poll: int = 10,
    shift: tuple[int, int, float] | None = None,
) -> list[list[TelemetryBatch]]:
    series = [series_key("gpu_power_watts", {"gpu_index": str(i)}) for i in range(n_series)]
    polls = []
    for t0 in range(0, seconds, per_poll):
        values = rng.normal(300, 5, size=(per_poll, n_series))
        ts = T0 + t0 + np.arange(per_poll)
        if shift:
            start, stop, delta = shift
            rows = (ts - T0 >= start) & (ts - T0 < stop)
            values[rows, 0] += delta
        polls.append([batch("h1", series, ts, values)])
    return polls


def test_no_detections_on_ten_minutes_of_gaussian_noise_over_100_series() -> None:
    eng = engine()
    found = feed(eng, gaussian_polls(np.random.default_rng(1), 100, 600))
    assert found == []


def test_step_change_fires_one_gpu_alert_and_resolves_after_the_step_ends() -> None:
    eng = engine()
    found = feed(eng, gaussian_polls(np.random.default_rng(2), 4, 300, shift=(120, 180, 200.0)))
    assert [d.decision for d in found] == ["firing", "resolved"]
    fire, resolve = found
    assert fire.labels == {"alertname": "GpuTelemetryAnomaly", "cluster": "c1", "host": "h1", "gpu_index": "0"}
    assert 120 <= fire.ts - T0 <= 125  # min_hits=3 consecutive samples
    assert 'gpu_power_watts{gpu_index="0"}' in fire.reason["metrics"] and fire.score > 6
    assert 180 <= resolve.ts - T0 <= 195  # clear_after=10 calm samples


def temperature_polls(temps: list[float]) -> list[list[TelemetryBatch]]:
    key = series_key("gpu_temperature_celsius", {"gpu_index": "2"})
    return [[batch("h1", [key], np.array([T0 + i]), np.array([[v]]))] for i, v in enumerate(temps)]


def test_threshold_for_holds_down_short_excursions() -> None:
    eng = engine(stages=["threshold"])
    short = feed(eng, temperature_polls([70] * 5 + [90] * 8 + [70] * 5))  # 8 s above: under "for: 10s"
    assert short == []
    found = feed(eng, temperature_polls([90] * 15 + [70]))
    assert [(d.labels["alertname"], d.decision) for d in found] == [
        ("GpuOverTemperature", "firing"),
        ("GpuOverTemperature", "resolved"),
    ]
    assert found[0].labels["gpu_index"] == "2" and found[0].severity == "critical"
    assert found[0].ts - found[0].window_start >= 10


def test_counter_rules_use_the_rate_not_the_value() -> None:
    eng = engine(stages=["threshold"])
    key = series_key("gpu_ecc_sbe_volatile_total", {"gpu_index": "1"})
    dbe = series_key("gpu_ecc_dbe_volatile_total", {"gpu_index": "1"})
    sbe = [1000.0] * 5 + [1000.0 + 3 * i for i in range(1, 16)]  # high value, zero rate; then 3/s
    dbes = [7.0] * 12 + [8.0] * 8  # one double-bit error
    polls = [
        [batch("h1", [key, dbe], np.array([T0 + i]), np.array([[s, d]]))]
        for i, (s, d) in enumerate(zip(sbe, dbes, strict=True))
    ]
    found = feed(eng, polls)
    names = [(d.labels["alertname"], d.decision) for d in found]
    assert ("GpuEccDbeIncrease", "firing") in names and ("GpuEccSbeRateHigh", "firing") in names
    dbe_fire = next(d for d in found if d.labels["alertname"] == "GpuEccDbeIncrease")
    assert dbe_fire.ts == T0 + 12  # the tick the counter moved
    sbe_fire = next(d for d in found if d.labels["alertname"] == "GpuEccSbeRateHigh")
    assert sbe_fire.ts - T0 >= 15  # rate > 1/s from t=5, held for 10 s
    assert not any(d.decision == "resolved" and d.labels["alertname"] == "GpuEccDbeIncrease" for d in found)


def test_a_lasting_level_shift_fires_once_then_is_adopted_as_the_new_baseline() -> None:
    """The fixed issue: a lasting step used to fire until the process restarted."""
    eng = engine(zscore={"shift_after": 60})
    found = feed(eng, gaussian_polls(np.random.default_rng(8), 4, 600, shift=(120, 600, 200.0)))
    assert [d.decision for d in found] == ["firing", "resolved"]
    fire, resolve = found
    assert 120 <= fire.ts - T0 <= 125 and 180 <= resolve.ts - T0 <= 195
    assert fire.reason["feature"] == 'gpu_power_watts{gpu_index="0"}' and fire.reason["detector"] == "robust_z"
    assert fire.reason["hits"] >= 3 and fire.reason["tail_probability"] < 1e-9
    slot = eng.slots.slot(0, "c1", "h1", 'gpu_power_watts{gpu_index="0"}')
    assert abs(eng.slots.col("z_mean")[slot] - 500) < 3  # 300 + the step


def test_snapshot_carries_every_zscore_column_and_resumes_identically() -> None:
    polls = gaussian_polls(np.random.default_rng(9), 6, 400, shift=(200, 400, 150.0))
    cfg = {"zscore": {"shift_after": 50, "cooldown": 20}}
    warm = engine(**cfg)
    feed(warm, polls[:25])  # stops mid-shift: runs, hits and the firing state are all in flight
    tp = TopicPartition("vigil.telemetry.v1", 0)
    body = warm.snapshot(tp, "telemetry")
    det = warm.telemetry[0]
    assert set(det.columns()) <= set(body["telemetry"]["cols"])
    assert {"z_run", "z_shift", "z_quiet", "z_hist"} <= set(det.columns())
    cold = engine(**cfg)
    cold.restore(tp, "telemetry", body)
    later = feed(warm, polls[25:])
    assert [d.decision for d in later] == ["resolved"]  # the adopted shift
    assert feed(cold, polls[25:]) == later


def test_a_snapshot_from_before_the_library_restores_with_defaults_for_new_columns() -> None:
    polls = gaussian_polls(np.random.default_rng(10), 3, 100)
    warm = engine()
    feed(warm, polls)
    tp = TopicPartition("vigil.telemetry.v1", 0)
    old_columns = ["last_value", "last_ts", "z_n", "z_mean", "z_mad", "z_hist", "z_below", "z_active", "z_last"]
    blob = warm.slots.export(warm.slots.slots_of(0), old_columns)
    blob["cols"]["z_hist"] = np.zeros(3, dtype=np.uint8).tobytes()  # the old 8-bit history
    blob["dtypes"]["z_hist"] = "|u1"
    cold = engine()
    cold.restore(tp, "telemetry", {"telemetry": blob})
    slots = cold.slots.slots_of(cold.pid(tp))
    assert (cold.slots.col("z_n")[slots] == 100).all() and (cold.slots.col("z_run")[slots] == 0).all()
    assert feed(cold, gaussian_polls(np.random.default_rng(11), 3, 50)) == []
