"""Each fault kind has its visible effect, on exactly its target, and ground truth says so."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from vigil.collectors.sim import FAULT_KINDS, FleetSimulator, SimConfig, SimOutput

from vigil import catalog as c
from vigil.errors import ConfigError
from vigil.events import TrainingStep, series_key

START = 1_767_225_600.0
KINDS = ("thermal", "xid79", "xid48", "ecc_trend", "straggler", "hang", "loss_nan")


def simulate(faults: list[dict[str, Any]], seconds: int, **config: Any) -> list[SimOutput]:
    sim = FleetSimulator(SimConfig(faults=faults, **config), START)
    return [sim.tick(START + k) for k in range(seconds)]


def gpu_value(out: SimOutput, host: str, metric: str, gpu: int) -> float:
    """The sample, or NaN when the series is absent from the host's batch."""
    batch = next(b for b in out.telemetry if b.host == host)
    key = series_key(metric, {"gpu_index": str(gpu)})
    return float(batch.values[-1, batch.series.index(key)]) if key in batch.series else math.nan


def all_gpus(out: SimOutput, metric: str) -> np.ndarray:
    return np.array([[gpu_value(out, f"node-{n:02d}", metric, g) for g in range(8)] for n in range(8)])


def steps_between(outs: list[SimOutput], lo: float, hi: float) -> list[TrainingStep]:
    """Steps that completed in [lo, hi) seconds after the start."""
    return [s for out in outs for b in out.training for s in b.steps() if START + lo <= s.ts < START + hi]


def test_catalog_has_the_named_kinds() -> None:
    assert set(KINDS) <= set(FAULT_KINDS.names())


def test_thermal_heats_and_throttles_only_its_gpu_and_slows_the_job() -> None:
    outs = simulate([{"kind": "thermal", "at": 10, "duration": 30, "host": "node-01", "gpu_index": 2}], 50)
    before, during, after = outs[8], outs[28], outs[48]
    temp_rise = all_gpus(during, c.GPU_TEMPERATURE) - all_gpus(before, c.GPU_TEMPERATURE)
    clock_ratio = all_gpus(during, c.GPU_SM_CLOCK) / all_gpus(before, c.GPU_SM_CLOCK)
    assert 85.0 <= gpu_value(during, "node-01", c.GPU_TEMPERATURE, 2) <= 95.0
    assert temp_rise[1, 2] > 15.0 and np.delete(temp_rise.ravel(), 10).max() < 3.0
    assert 0.55 < clock_ratio[1, 2] < 0.75 and np.delete(clock_ratio.ravel(), 10).min() > 0.97
    assert gpu_value(during, "node-01", c.GPU_POWER, 2) < gpu_value(before, "node-01", c.GPU_POWER, 2)
    assert gpu_value(after, "node-01", c.GPU_TEMPERATURE, 2) < 75.0
    healthy = np.mean([s.step_time_s for s in steps_between(outs, 2, 9)])
    hot = np.mean([s.step_time_s for s in steps_between(outs, 22, 38)])
    assert 1.2 < hot / healthy < 1.4
    slow_rank = {
        s.rank
        for s in steps_between(outs, 22, 38)
        if s.compute_time_s == max(t.compute_time_s or 0.0 for t in steps_between(outs, 22, 38) if t.step == s.step)
    }
    assert slow_rank == {10}


def test_xid79_removes_the_gpu_logs_xid_and_stops_the_job_until_restarted_from_its_checkpoint() -> None:
    fault = {"kind": "xid79", "at": 10, "duration": 10, "host": "node-05", "gpu_index": 6}
    outs = simulate([fault], 30, restart_cost=4.0, checkpoint_every=8)
    logs = [line for out in outs for line in out.logs]
    assert len(logs) == 1
    line = logs[0]
    assert (line.kind, line.code, line.host, line.gpu_index) == ("xid", 79, "node-05", 6)
    assert line.raw.startswith("NVRM: Xid (PCI:0000:") and "79, " in line.raw and "fallen off the bus" in line.raw
    assert line.gpu_pci is not None and line.gpu_pci[5:7] in line.raw
    for k in (10, 15, 19):
        batch = next(b for b in outs[k].telemetry if b.host == "node-05")
        assert not any('gpu_index="6"' in s for s in batch.series)
        assert len(batch.series) == 7 * 8 + 5 and batch.values.shape == (1, len(batch.series))
        assert len(outs[k].telemetry) == 10
    before = steps_between(outs, 0, 10)
    assert max(s.ts for s in before) > START + 9.4  # the job ran until the GPU fell off
    assert not math.isnan(gpu_value(outs[15], "node-05", c.GPU_TEMPERATURE, 5))
    assert not math.isnan(gpu_value(outs[22], "node-05", c.GPU_TEMPERATURE, 6))
    # Stopped while the GPU is gone, then relaunched when it is back (the fault's end: a person fixed it):
    # the restart takes 4 s and resumes at the last checkpoint (every 8 steps), so steps are done again.
    assert steps_between(outs, 10, 24) == []
    after = steps_between(outs, 24, 30)
    newest, first_again = max(s.step for s in before), min(s.step for s in after)
    assert first_again <= newest and (first_again - 10_000) % 8 == 0
    assert {s.rank for s in after} == set(range(64))


def test_xid48_increments_dbe_of_that_gpu_only_and_logs_xid48() -> None:
    outs = simulate([{"kind": "xid48", "at": 5, "duration": 10, "host": "node-02", "gpu_index": 5}], 20)
    dbe_before, dbe_after = all_gpus(outs[4], c.GPU_ECC_DBE), all_gpus(outs[19], c.GPU_ECC_DBE)
    delta = dbe_after - dbe_before
    assert delta[2, 5] in (1.0, 2.0) and np.delete(delta.ravel(), 21).max() == 0.0
    codes = [line.code for out in outs for line in out.logs]
    assert codes[0] == 48 and set(codes) <= {48, 63}
    assert "uncorrectable double bit error (DBE)" in outs[5].logs[0].raw


def test_ecc_trend_raises_sbe_fast_on_its_gpu_only() -> None:
    outs = simulate([{"kind": "ecc_trend", "at": 5, "duration": 30, "host": "node-03", "gpu_index": 1}], 40)
    delta = all_gpus(outs[35], c.GPU_ECC_SBE) - all_gpus(outs[4], c.GPU_ECC_SBE)
    assert delta[3, 1] > 200
    assert np.delete(delta.ravel(), 25).max() <= 1.0
    per_second = np.diff([gpu_value(o, "node-03", c.GPU_ECC_SBE, 1) for o in outs[5:36]])
    assert per_second[-5:].mean() > per_second[:5].mean()  # the trend grows


def test_straggler_slows_only_its_rank_and_the_step() -> None:
    outs = simulate([{"kind": "straggler", "at": 10, "duration": 20, "rank": 42}], 35)
    healthy, slow = steps_between(outs, 2, 10), steps_between(outs, 12, 30)

    def mean_compute(steps: list[TrainingStep], rank: int) -> float:
        return float(np.mean([s.compute_time_s for s in steps if s.rank == rank]))

    assert 1.35 < mean_compute(slow, 42) / mean_compute(healthy, 42) < 1.65
    for rank in (0, 7, 41, 43, 63):
        assert abs(mean_compute(slow, rank) / mean_compute(healthy, rank) - 1.0) < 0.02
    assert np.mean([s.step_time_s for s in slow]) > 1.3 * np.mean([s.step_time_s for s in healthy])
    assert gpu_value(outs[20], "node-05", c.GPU_UTILIZATION, 2) < gpu_value(outs[5], "node-05", c.GPU_UTILIZATION, 2)


def test_hang_stops_all_steps_but_not_telemetry() -> None:
    outs = simulate([{"kind": "hang", "at": 10, "duration": 10}], 30)
    assert steps_between(outs, 10, 20) == []
    assert all(len(out.telemetry) == 10 and out.telemetry[0].values.shape == (1, 69) for out in outs[10:20])
    resumed = steps_between(outs, 21, 30)
    assert {s.rank for s in resumed} == set(range(64))


def test_loss_nan_on_every_rank_while_active() -> None:
    outs = simulate([{"kind": "loss_nan", "at": 10, "duration": 10}], 30)
    assert all(math.isfinite(s.loss) for s in steps_between(outs, 1, 10))
    bad = steps_between(outs, 12, 20)
    assert bad and all(math.isnan(s.loss) for s in bad) and {s.rank for s in bad} == set(range(64))
    spike = [s.loss for s in steps_between(outs, 10, 12) if math.isfinite(s.loss)]
    assert spike and min(spike) > 10.0  # x10 of a ~2-3 loss before it turns NaN
    assert all(math.isfinite(s.loss) and s.loss < 5.0 for s in steps_between(outs, 21, 30))


@pytest.mark.parametrize(
    ("spec", "entity"),
    [
        ({"kind": "thermal", "host": "node-03", "gpu_index": 5}, {"host": "node-03", "gpu_index": "5"}),
        ({"kind": "xid79", "host": "node-03", "gpu_index": 5}, {"host": "node-03", "gpu_index": "5"}),
        ({"kind": "xid48", "rank": 29}, {"host": "node-03", "gpu_index": "5"}),
        ({"kind": "ecc_trend", "host": "node-03", "gpu_index": 5}, {"host": "node-03", "gpu_index": "5"}),
        ({"kind": "straggler", "rank": 12}, {"job_id": "job-0", "rank": "12", "host": "node-01", "gpu_index": "4"}),
        ({"kind": "hang"}, {"job_id": "job-0"}),
        ({"kind": "loss_nan"}, {"job_id": "job-0"}),
    ],
)
def test_ground_truth_start_and_end(spec: dict[str, Any], entity: dict[str, str]) -> None:
    outs = simulate([{**spec, "at": 3, "duration": 5}], 12)
    events = [(k, f) for k, out in enumerate(outs) for f in out.faults]
    assert [k for k, _ in events] == [3, 8]
    (_, begin), (_, end) = events
    assert begin.fault_id == end.fault_id == f"f-0001-{spec['kind']}"
    assert begin.kind == spec["kind"] and dict(begin.entity) == entity == dict(end.entity)
    assert (begin.start, begin.end, end.start, end.end) == (START + 3, None, START + 3, START + 8)


def test_unspecified_targets_are_picked_from_the_seed() -> None:
    def target(seed: int) -> dict[str, str]:
        return dict(simulate([{"kind": "thermal", "at": 1}], 2, seed=seed)[1].faults[0].entity)

    assert target(3) == target(3)
    assert {tuple(target(s).items()) for s in range(6)} != {tuple(target(0).items())}


def test_fault_without_duration_lasts_until_finish() -> None:
    sim = FleetSimulator(SimConfig(faults=[{"kind": "hang", "at": 1}]), START)
    outs = [sim.tick(START + k) for k in range(20)]
    assert sum(len(o.faults) for o in outs) == 1 and steps_between(outs, 1, 20) == []
    done = sim.finish(START + 20)
    assert [(f.kind, f.end) for f in done.faults] == [("hang", START + 20)]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "meteor", "at": 1}, "unknown fault kind 'meteor'"),
        ({"kind": "thermal", "at": 1, "host": "node-10"}, "faults[0].host"),
        ({"kind": "thermal", "at": 1, "gpu_index": 8}, "gpu_index"),
        ({"kind": "straggler", "at": "soon"}, "invalid duration"),
    ],
)
def test_bad_fault_specs_are_config_errors(fault: dict[str, Any], message: str) -> None:
    from vigil.config import validate

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(SimConfig, {"faults": [fault]}, prefix="sim")


def test_silent_data_corruption_leaves_telemetry_and_logs_exactly_as_they_were() -> None:
    """Same seed with and without an sdc fault: identical telemetry, logs and steps; only ground truth differs."""
    sdc = [{"kind": "sdc", "at": 5, "duration": 10, "host": "node-03", "gpu_index": 4}]
    clean, corrupt = simulate([], 20, schedule="none"), simulate(sdc, 20)
    for a, b in zip(clean, corrupt, strict=True):
        assert [x.values.tobytes() for x in a.telemetry] == [x.values.tobytes() for x in b.telemetry]
        assert a.logs == b.logs
        assert [s for t in a.training for s in t.steps()] == [s for t in b.training for s in t.steps()]
    truth = [f for out in corrupt for f in out.faults]
    assert [(f.kind, dict(f.entity), f.end is None) for f in truth] == [
        ("sdc", {"host": "node-03", "gpu_index": "4"}, True), ("sdc", {"host": "node-03", "gpu_index": "4"}, False)]
