"""The fleet simulator without faults: reproducibility, shapes, realistic ranges, the demo schedule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from vigil.collectors.sim import FleetSimulator, SimConfig, SimOutput

from vigil import catalog as c
from vigil.codec import decode, encode
from vigil.events import Event, TelemetryBatch, parse_series_key

START = 1_767_225_600.0


def events(out: SimOutput) -> list[Event]:
    return [*out.telemetry, *out.logs, *out.training, *out.faults]


def encoded_run(seconds: int, **config: Any) -> list[bytes]:
    sim = FleetSimulator(SimConfig(**config), START)
    return [encode(e) for k in range(seconds) for e in events(sim.tick(START + k))]


def column(batch: TelemetryBatch, metric: str) -> np.ndarray:
    cols = [i for i, s in enumerate(batch.series) if parse_series_key(s)[0] == metric]
    return batch.values[:, cols]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = encoded_run(100)
    assert first == encoded_run(100)
    assert len(first) > 100 * 8
    assert first != encoded_run(100, seed=1)


def test_one_batch_per_host_with_all_series_named_by_the_catalog() -> None:
    sim = FleetSimulator(SimConfig(schedule="none"), START)
    out = sim.tick(START)
    assert [b.host for b in out.telemetry] == [f"node-{i:02d}" for i in range(10)]  # 8 for the job, 2 spares
    batch = out.telemetry[3]
    assert batch.values.shape == (1, 8 * 8 + 5) and batch.ts.tolist() == [START]
    metrics = {parse_series_key(s)[0] for s in batch.series}
    assert metrics <= set(c.METRICS) and len(metrics) == 13
    assert {parse_series_key(s)[1].get("gpu_index") for s in batch.series} == {None, *map(str, range(8))}
    # The series tuple is cached: the same object every tick while no GPU comes or goes.
    assert sim.tick(START + 1).telemetry[3].series is batch.series


def test_healthy_values_are_in_realistic_ranges_and_counters_monotone() -> None:
    sim = FleetSimulator(SimConfig(schedule="none"), START)
    outs = [sim.tick(START + k) for k in range(120)]
    values = np.concatenate([o.telemetry[0].values for o in outs])
    batch = TelemetryBatch("node-00", "default", np.zeros(120), outs[0].telemetry[0].series, values)
    ranges = {
        c.GPU_UTILIZATION: (0.85, 1.0),
        c.GPU_MEMORY_USED: (55 * 2**30, 75 * 2**30),
        c.GPU_SM_CLOCK: (1.85e9, 1.98e9),
        c.GPU_TEMPERATURE: (55.0, 75.0),
        c.GPU_MEMORY_TEMPERATURE: (60.0, 82.0),
        c.GPU_POWER: (520.0, 720.0),
        c.HOST_CPU_UTILIZATION: (0.0, 1.0),
    }
    for metric, (lo, hi) in ranges.items():
        col = column(batch, metric)
        assert lo <= col.min() and col.max() <= hi, metric
        assert col.std() > 0, f"{metric} has no noise"
    for metric in (c.GPU_ECC_SBE, c.GPU_ECC_DBE, c.HOST_NETWORK_RECEIVE, c.HOST_NETWORK_TRANSMIT):
        assert (np.diff(column(batch, metric), axis=0) >= 0).all(), metric
    assert column(batch, c.GPU_ECC_SBE)[-1].max() <= 1.0


def test_training_steps_every_rank_two_per_second_with_decaying_loss() -> None:
    sim = FleetSimulator(SimConfig(schedule="none"), START)
    steps = [s for k in range(1, 61) for b in sim.tick(START + k).training for s in b.steps()]
    by_step: dict[int, list[Any]] = {}
    for s in steps:
        by_step.setdefault(s.step, []).append(s)
    assert 110 <= len(by_step) <= 125  # ~2 steps/s for 60 s
    for group in by_step.values():
        assert sorted(s.rank for s in group) == list(range(64))
        assert len({s.step_time_s for s in group}) == 1
        assert group[0].step_time_s >= max(s.compute_time_s for s in group)
    one = steps[0]
    assert (one.job_id, one.host, one.gpu_index) == ("job-0", "node-00", 0)
    assert (steps[8].host, steps[8].gpu_index, steps[8].rank) == ("node-01", 0, 8)
    assert one.tokens_per_s and one.tokens_per_s > 10_000 and one.learning_rate and one.grad_norm
    assert all(math.isfinite(s.loss) and 1.5 < s.loss < 4.0 for s in steps)


def test_every_event_round_trips_through_the_codec() -> None:
    sim = FleetSimulator(SimConfig(ticks_per_batch=3), START)
    produced = [e for k in range(130) for e in events(sim.tick(START + k))]
    kinds = {type(e).__name__ for e in produced}
    assert kinds == {"TelemetryBatch", "LogEvent", "TrainingStepBatch", "FaultInjection"}
    for event in produced:
        back = decode(encode(event))
        assert type(back) is type(event)
        if isinstance(event, TelemetryBatch):
            assert isinstance(back, TelemetryBatch) and back.series == event.series
            np.testing.assert_array_equal(back.values, event.values)
            np.testing.assert_allclose(back.ts, event.ts, atol=1e-6)
        else:
            assert encode(back) == encode(event)


def test_ticks_per_batch_groups_ticks_into_one_batch_per_host() -> None:
    sim = FleetSimulator(SimConfig(ticks_per_batch=5, schedule="none"), START)
    outs = [sim.tick(START + k) for k in range(12)]
    assert [len(o.telemetry) for o in outs] == [0, 0, 0, 0, 10, 0, 0, 0, 0, 10, 0, 0]
    batch = outs[4].telemetry[2]
    assert batch.ts.tolist() == [START + k for k in range(5)] and batch.values.shape == (5, 69)
    assert batch.sample_count == 5 * 69
    rest = sim.finish(START + 12).telemetry
    assert len(rest) == 10 and rest[0].values.shape == (2, 69)


def test_a_vanishing_gpu_closes_the_batch_early() -> None:
    fault = {"kind": "xid79", "at": 3, "duration": 4, "host": "node-00", "gpu_index": 0}
    sim = FleetSimulator(SimConfig(ticks_per_batch=5, faults=[fault]), START)
    outs = [sim.tick(START + k) for k in range(12)]
    shapes = [[b.values.shape for b in o.telemetry][:2] for o in outs]
    assert shapes[3] == [(3, 69), (3, 69)]  # ticks 0-2 with the GPU, closed when it fell off
    assert shapes[7] == [(4, 61), (4, 69)]  # ticks 3-6 without it on node-00 only


def test_demo_schedule_shows_every_kind_and_never_hangs_during_xid79() -> None:
    sim = FleetSimulator(SimConfig(), START)
    ground_truth = [f for k in range(1500) for f in sim.tick(START + k).faults]
    starts = [(f.start - START, f.kind) for f in ground_truth if f.end is None]
    assert starts[:6] == [
        (25.0, "thermal"),
        (35.0, "xid48"),
        (45.0, "ecc_trend"),
        (50.0, "straggler"),
        (60.0, "xid79"),
        (95.0, "loss_nan"),
    ]
    assert {kind for _, kind in starts} == {"thermal", "xid48", "ecc_trend", "straggler", "xid79", "hang", "loss_nan"}
    ends = {f.fault_id: f for f in ground_truth if f.end is not None}
    spans = [(f.kind, f.start, f.end or math.inf) for f in ends.values()]
    restart = SimConfig().restart_cost  # a lost GPU stops the job until it is back and relaunched
    for kind, start, end in spans:
        if kind in ("hang", "straggler", "loss_nan") and start - START >= 120:  # the rounds' job faults
            assert not any(k in ("xid79", "xid48") and s < end and start < e + restart for k, s, e in spans)
    assert len({f.fault_id for f in ground_truth}) == len(starts)


def test_schedule_none_injects_nothing_and_the_demo_fits_a_small_fleet() -> None:
    quiet = FleetSimulator(SimConfig(schedule="none"), START)
    assert not any(quiet.tick(START + k).faults for k in range(200))
    small = FleetSimulator(SimConfig(nodes=2, gpus_per_node=4), START)
    kinds = [f.kind for k in range(200) for f in small.tick(START + k).faults if f.end is None]
    assert kinds[:6] == ["thermal", "xid48", "ecc_trend", "straggler", "xid79", "loss_nan"]


def test_training_off_sends_telemetry_but_no_steps() -> None:
    sim = FleetSimulator(SimConfig(schedule="none", training=False), START)
    outs = [sim.tick(START + k) for k in range(5)]
    assert not any(o.training for o in outs)
    assert sum(b.sample_count for o in outs for b in o.telemetry) == 5 * 10 * (8 * 8 + 5)
