"""Peer comparison: group medians, a hot GPU among its siblings, the straggler rank, the frame function."""

from __future__ import annotations

import numpy as np
import pytest
from vigil.analytics.models.peers import PeerDetector, RankPeerDetector, group_median, peer_deviation
from vigil.analytics.stages.siblings import SiblingIndex, frame_sibling_deviation
from vigil.analytics.stages.slots import SlotTable, build_frame
from vigil.collectors.sim import FleetSimulator, SimConfig

from vigil.catalog import GPU_TEMPERATURE
from vigil.events import parse_series_key

START = 1_767_225_600.0
GPUS = [str(g) for g in range(8)]


def test_group_median_equals_numpy_per_group_ignoring_nan() -> None:
    rng = np.random.default_rng(3)
    group = rng.integers(0, 40, 500)
    values = rng.normal(size=500)
    values[rng.random(500) < 0.1] = np.nan
    med, count = group_median(group, values)
    for g in np.unique(group):
        members = values[group == g]
        finite = members[np.isfinite(members)]
        assert np.all(count[group == g] == finite.size)
        if finite.size:
            np.testing.assert_allclose(med[group == g], np.median(finite))
        else:
            assert np.isnan(med[group == g]).all()


def test_deviation_uses_the_floor_for_a_flat_group_and_needs_enough_peers() -> None:
    z, med = peer_deviation(np.zeros(8, dtype=np.intp), np.r_[np.full(7, 1980.0), 1990.0], rel_floor=0.02)
    assert med[0] == 1980.0 and z[-1] == pytest.approx(10 / (0.02 * 1980))  # MAD 0: the relative floor
    z, _ = peer_deviation(np.zeros(2, dtype=np.intp), np.array([1.0, 100.0]))
    assert not z.any()  # two GPUs: nothing to take a median of


def temperatures(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 60 + np.linspace(0, 3, 8) + rng.normal(0, 0.4, (rows, 8))  # rear GPUs run warmer


def test_a_gpu_hotter_than_its_siblings_scores_once_it_persists_and_is_named() -> None:
    X = temperatures(300)
    X[200:, 5] += 25  # thermal fault on GPU 5
    X[100, 2] += 20  # a single bad reading on GPU 2
    model = PeerDetector(GPUS, persist=3)
    scores = model.process_many(X)
    assert scores[:200].max() < 4  # the one-sample glitch does not persist
    assert scores[200] < 4 and scores[201] < 4 and scores[202:].min() > 8  # three rows in a row
    reason = model.explain(dict(zip(GPUS, X[-1].tolist(), strict=True)))
    assert reason["gpu_index"] == "5" and reason["deviation"] > 8 and 60 < reason["peer_median"] < 63


def test_a_cooler_gpu_counts_for_gpus_but_a_faster_rank_does_not_count_as_a_straggler() -> None:
    X = temperatures(50)
    X[:, 1] -= 25  # e.g. a GPU idling while its siblings train
    assert PeerDetector(GPUS).process_many(X)[-1] > 8
    rng = np.random.default_rng(1)
    ranks = [str(r) for r in range(64)]
    steps = 0.5 * (1 + 0.01 * rng.normal(size=(40, 64)))
    steps[:, 9] *= 0.8  # rank 9 is faster: not a problem
    assert RankPeerDetector(ranks).process_many(steps).max() < 3
    steps[20:, 17] *= 1.5  # rank 17 straggles
    model = RankPeerDetector(ranks)
    scores = model.process_many(steps)
    assert scores[:20].max() < 3 and scores[22:].min() > 8
    assert model.explain(dict(zip(ranks, steps[-1].tolist(), strict=True)))["rank"] == "17"


def test_the_frame_function_names_the_hot_gpu_of_a_simulated_thermal_fault() -> None:
    fault = {"kind": "thermal", "at": 20, "duration": 60, "host": "node-02", "gpu_index": 6}
    sim = FleetSimulator(SimConfig(nodes=4, spare_nodes=0, schedule="none", faults=[fault], training=False), START)
    table = SlotTable()
    index = SiblingIndex(table)
    worst: dict[int, tuple[float, str, str]] = {}  # per tick: the largest temperature deviation, and whose
    others = 0.0  # the largest deviation of any series of any other GPU
    for k in range(60):
        batches = sim.tick(START + k).telemetry
        frame = build_frame(table, [table.admit(0, b) for b in batches])
        for lo, hi in frame.rounds:
            slots, z, _ = frame_sibling_deviation(index, frame, lo, hi)
            keys = [table.keys[s] for s in slots.tolist()]
            temp = np.array([parse_series_key(key[2])[0] == GPU_TEMPERATURE for key in keys if key])
            j = int(np.argmax(np.where(temp, np.abs(z), 0)))
            entity = table.entities[int(table.col("entity")[slots[j]])]
            worst[k] = (float(abs(z[j])), entity.host, entity.gpu_index)
            faulty = np.array([key[1] == "node-02" and '"6"' in key[2] for key in keys if key])
            others = max(others, float(np.abs(z[~faulty]).max()))
    # Healthy: only the rear GPUs' slot offset (the simulator puts them ~3 degrees warmer) shows.
    assert max(v for v, _, _ in (worst[k] for k in range(20))) < 6
    assert all(worst[k][0] > 15 and worst[k][1:] == ("node-02", "6") for k in range(30, 60))
    assert others < 6  # counters (ECC) are left out: one healthy correctable error is no deviation


def test_persistence_history_survives_a_snapshot() -> None:
    X = temperatures(10)
    X[:, 4] += 25
    model = PeerDetector(GPUS, persist=4)
    model.process_many(X[:2])
    clone = PeerDetector([], persist=4)
    clone.restore(model.snapshot())
    np.testing.assert_array_equal(clone.process_many(X[2:]), model.process_many(X[2:]))
    assert model.process_many(X[:1])[0] > 8


def test_without_persistence_a_single_row_scores_and_the_empty_history_restores() -> None:
    model = PeerDetector(GPUS, persist=1)
    X = temperatures(3)
    X[1, 3] += 25
    assert model.process_many(X)[1] > 8
    clone = PeerDetector([], persist=1)
    clone.restore(model.snapshot())
    np.testing.assert_array_equal(clone.score_many(X), model.score_many(X))


def test_peer_deviation_by_rows_equals_the_grouped_form() -> None:
    from vigil.analytics.models.peers import peer_deviation_rows

    rng = np.random.default_rng(4)
    X = rng.normal(0.4, 0.01, (30, 64))
    X[7, 9] += 0.3  # a straggler in one step
    z, med = peer_deviation_rows(X, rel_floor=0.05, abs_floor=1e-3)
    grouped, medians = peer_deviation(np.repeat(np.arange(30), 64), X.ravel(), rel_floor=0.05, abs_floor=1e-3)
    np.testing.assert_allclose(z.ravel(), grouped, rtol=1e-12)
    np.testing.assert_allclose(np.repeat(med, 64), medians, rtol=1e-12)
    assert np.unravel_index(np.argmax(z), z.shape) == (7, 9)
