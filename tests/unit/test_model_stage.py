"""The ``model`` stage on the bus-free engine: any registered model per host or GPU, its decisions,
its state in the partition snapshot (restored, it scores exactly as the original), its worker thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.models.adaptive_mspc import AdaptiveMSPC
from vigil.analytics.stages import model as stage_module
from vigil.analytics.stages.engine import Engine
from vigil.analytics.stages.model import ModelStage, Scored, Unit
from vigil.analytics.stages.state import decode_snapshot, encode_snapshot
from vigil.collectors.sim import FleetSimulator, SimConfig

from vigil import catalog as c
from vigil.bus import TopicPartition
from vigil.events import Detection, TelemetryBatch

T0 = 1_767_225_600.0
METRICS = [c.GPU_TEMPERATURE, c.GPU_MEMORY_TEMPERATURE, c.GPU_POWER, c.GPU_SM_CLOCK, c.GPU_UTILIZATION]
TP = TopicPartition("vigil.telemetry.v1", 0)
FAULT = {"kind": "thermal", "at": 400, "duration": 60, "host": "node-02", "gpu_index": 3}


def config(**stage: Any) -> AnalyticsConfig:
    spec = {"stage": "model", "name": "host_mspc", "model": "adaptive_mspc", "per": "host", "metrics": METRICS}
    return AnalyticsConfig.model_validate({"stages": [{**spec, **stage}]})


def ticks(start: int, stop: int, faults: list[dict[str, Any]] | None = None) -> Iterator[list[TelemetryBatch]]:
    """The simulator's telemetry, one tick at a time (the same seed: the same fleet every call)."""
    sim = FleetSimulator(SimConfig(nodes=4, spare_nodes=0, schedule="none", training=False, faults=faults or []), T0)
    for k in range(stop):
        batches = sim.tick(T0 + k).telemetry
        if k >= start:
            yield batches


def run(engine: Engine, polls: Iterator[list[TelemetryBatch]]) -> list[Detection]:
    """Every tick through the engine, then the worker's last job and any rows still pending."""
    found: list[Detection] = []
    for batches in polls:
        found += engine.observe_telemetry([(engine.pid(TP), b) for b in batches])
    stage = stage_of(engine)
    found += stage.settle()
    while any(u is not None and u.pending for u in stage.units):
        found += stage.pump() + stage.settle()
    return found


def stage_of(engine: Engine) -> ModelStage:
    stage = engine.telemetry[0]
    assert isinstance(stage, ModelStage)
    return stage


@pytest.fixture
def scores(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Every score the stage's model work returns, by host, in order."""
    seen: dict[str, list[float]] = {}
    score = stage_module.score

    def recording(jobs: list[tuple[Unit, Any, Any]]) -> list[Scored]:
        out = score(jobs)
        for (unit, _, _), scored in zip(jobs, out, strict=True):
            seen.setdefault(unit.host, []).extend(scored.scores.tolist())
        return out

    monkeypatch.setattr(stage_module, "score", recording)
    return seen


@pytest.mark.parametrize("background", [False, True])
def test_a_host_model_fires_for_the_host_with_the_multi_metric_fault_only_and_resolves(background: bool) -> None:
    engine = Engine(config(background=background))
    found = run(engine, ticks(0, 520, [FAULT]))
    engine.close()
    assert [(d.labels["alertname"], d.labels["host"], d.decision) for d in found] == [
        ("HostMspcAnomaly", "node-02", "firing"),
        ("HostMspcAnomaly", "node-02", "resolved"),
    ]
    fired, resolved = found
    assert T0 + 400 <= fired.ts <= T0 + 410  # the thermal fault ramps over its first 10 s
    assert T0 + 460 <= resolved.ts <= T0 + 480
    assert fired.detector == "host_mspc" and fired.reason["detector"] == "adaptive_mspc"
    assert fired.reason["feature"].endswith('{gpu_index="3"}')  # the model blames a series of the hot GPU
    assert fired.reason["calibration"] == "running" and fired.reason["features"] == 40


def same_scores(got: dict[str, list[float]], expected: dict[str, list[float]], exact: bool) -> None:
    """Inline, both stages see the same blocks of rows: identical to the last bit. In the background the
    blocks a job takes depend on timing, and BLAS rounds a 40-feature product of 7 rows unlike 3 + 4
    rows: equal to 1e-12."""
    assert got.keys() == expected.keys()
    for host, values in expected.items():
        if exact:
            assert got[host] == values
        else:
            np.testing.assert_allclose(got[host], values, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("background", [False, True])
def test_snapshot_then_restore_gives_identical_later_scores(background: bool, scores: dict[str, list[float]]) -> None:
    first = Engine(config(background=background))
    run(first, ticks(0, 350))
    blob = decode_snapshot(encode_snapshot(first.snapshot(TP, "telemetry")))  # through bytes, as stored
    assert blob is not None and len(blob["stages"]["host_mspc"]["units"]) == 4
    scores.clear()
    later_first = run(first, ticks(350, 520, [FAULT]))
    expected = {host: list(values) for host, values in scores.items()}
    second = Engine(config(background=background))
    second.restore(TP, "telemetry", blob)
    scores.clear()
    later_second = run(second, ticks(350, 520, [FAULT]))
    same_scores(scores, expected, exact=not background)
    assert len(expected["node-02"]) == 170
    assert max(expected["node-02"]) > 20  # the fault is in the compared stretch
    assert [(d.ts, d.decision) for d in later_second] == [(d.ts, d.decision) for d in later_first]
    np.testing.assert_allclose([d.score for d in later_second], [d.score for d in later_first], rtol=1e-12)
    assert len(later_first) == 2
    first.close()
    second.close()


def test_rows_still_waiting_for_the_worker_go_into_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    gate, started = threading.Event(), threading.Event()
    score = stage_module.score

    def held(jobs: list[tuple[Unit, Any, Any]]) -> list[Scored]:
        if threading.current_thread() is not threading.main_thread():  # the worker, not the inline reference
            started.set()
            assert gate.wait(10)
        return score(jobs)

    monkeypatch.setattr(stage_module, "score", held)
    engine, reference = Engine(config()), Engine(config(background=False))
    polls, again = ticks(0, 300), ticks(0, 300)
    for k, (batches, same) in enumerate(zip(polls, again, strict=True)):
        reference.observe_telemetry([(0, b) for b in same])
        engine.observe_telemetry([(0, b) for b in batches])
        if k == 0:
            assert started.wait(10)  # the first job holds the worker: the next 299 ticks wait as pending rows
    gate.set()
    engine.settle()
    blob = engine.snapshot(TP, "telemetry")["stages"]["host_mspc"]
    pending = [np.frombuffer(u["pending_ts"]["data"]).size for u in blob["units"]]
    assert pending == [299] * 4
    restored = Engine(config(background=False))
    restored.restore(TP, "telemetry", {"stages": {"host_mspc": blob}})
    restored.observe_telemetry([])
    restored.settle()
    for unit, ref in zip(stage_of(restored).units, stage_of(reference).units, strict=True):
        assert unit is not None and ref is not None  # the pending rows were learnt after the restore:
        got, want = unit.model, ref.model
        assert isinstance(got, AdaptiveMSPC) and isinstance(want, AdaptiveMSPC)
        assert got.n == want.n == 300 - 300 % 32  # every complete chunk of 32 rows
        np.testing.assert_allclose(got.cov, want.cov, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)
    for e in (engine, restored, reference):
        e.close()


def test_a_gpu_model_gets_one_unit_per_gpu_and_no_host_series() -> None:
    engine = Engine(config(name="gpu_pca", model="pca", per="gpu", metrics=[*METRICS, c.HOST_CPU_UTILIZATION]))
    run(engine, ticks(0, 3))
    units = [u for u in stage_of(engine).units if u is not None]
    assert len(units) == 4 * 8 and all(u.gpu and len(u.names) == 5 for u in units)
    assert {u.names[0].partition("{")[2] for u in units} >= {'gpu_index="0"}', 'gpu_index="7"}'}
    engine.close()


def test_a_unit_models_at_most_max_features_series() -> None:
    engine = Engine(config(max_features=7))
    run(engine, ticks(0, 3))
    units = [u for u in stage_of(engine).units if u is not None]
    assert [len(u.names) for u in units] == [7] * 4
    assert all(len(u.model.features) == 7 for u in units)
    engine.close()


def test_a_revoked_partition_takes_its_units_and_a_new_assignment_starts_them_again() -> None:
    engine = Engine(config(background=False))
    run(engine, ticks(0, 5))
    stage = stage_of(engine)
    assert sum(u is not None for u in stage.units) == 4
    engine.drop(TP, "telemetry")
    assert all(u is None for u in stage.units)
    run(engine, ticks(5, 8))
    assert sum(u is not None for u in stage.units) == 4 and len(stage.units) == 4  # unit ids are reused


def test_a_model_that_raises_in_the_worker_loses_that_job_and_the_stage_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    score = stage_module.score
    calls = {"n": 0}

    def flaky(jobs: list[tuple[Unit, Any, Any]]) -> list[Scored]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("a model's bug")
        return score(jobs)

    monkeypatch.setattr(stage_module, "score", flaky)
    engine = Engine(config())
    run(engine, ticks(0, 40))  # no exception reaches the engine's caller
    stage = stage_of(engine)
    assert stage.failed_jobs == 1 and calls["n"] > 2  # later jobs ran
    engine.close()
