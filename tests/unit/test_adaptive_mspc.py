"""The adaptive MSPC: follows a lasting level shift, keeps scoring a short incident, causal, restorable."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from vigil.analytics.models import registry
from vigil.analytics.models.adaptive_mspc import AdaptiveMSPC

FEATURES = ["cpu", "load", "net", "disk", "temp", "errors"]
ACCEPT = 100


def rows(n: int, seed: int = 0) -> np.ndarray:
    """cpu, load and net follow one driver; disk, temp and errors are independent noise (all unit scale)."""
    rng = np.random.default_rng(seed)
    driver = rng.normal(0, 1, n)
    related = [driver + rng.normal(0, 0.3, n) for _ in range(3)]
    return np.column_stack([*related, *(rng.normal(0, 1, n) for _ in range(3))])


def model(gate: float = 4.0) -> AdaptiveMSPC:
    return AdaptiveMSPC(FEATURES, half_life=500, accept_after=ACCEPT, gate=gate)


def test_registry_names_the_model() -> None:
    assert registry.model_class("adaptive_mspc") is AdaptiveMSPC


def test_scores_nothing_before_warm_up_then_about_one() -> None:
    det = model()
    scores = det.process_many(rows(3000))
    assert (scores[: det.warmup] == 0).all()
    assert 0.5 < np.median(scores[1000:]) < 1.5


def test_a_short_warm_up_scores_with_the_covariance_learnt_by_then() -> None:
    # warm after 20 rows in chunks of 4: the subspace is re-derived as it turns warm, not kept from the
    # first chunk (whose covariance was still empty: scores of 1e12 for the next 128 rows)
    det = AdaptiveMSPC(FEATURES, warmup=20, chunk=4, half_life=100, accept_after=ACCEPT)
    scores = det.process_many(rows(200))
    assert (scores[:20] == 0).all()
    assert np.median(scores[20:128]) < 10 and scores[20:128].max() < 1000


def test_a_lasting_level_shift_becomes_the_new_normal() -> None:
    X = rows(6000)
    X[3000:, :3] += 8.0  # the three related metrics move to a new level for good
    det = model()
    scores = det.process_many(X)
    assert np.median(scores[3000:3050]) > 5.0  # seen at first
    assert np.median(scores[3000 + 3 * ACCEPT : 3000 + 6 * ACCEPT]) < 1.5  # then accepted
    assert np.median(scores[4000:]) < 1.5
    np.testing.assert_allclose(det.mean[:3], 8.0, atol=0.5)
    assert det.scale()[:3].max() < 1.5  # the jump itself did not blunt the scale


def test_a_short_incident_is_not_absorbed() -> None:
    X = rows(6000)
    X[3000:3060, 4] += 8.0  # temp jumps for 60 rows, fewer than accept_after
    det = model()
    scores = det.process_many(X)
    incident = scores[3000:3060]
    assert incident.min() > 5.0
    assert incident[-10:].mean() >= 0.9 * incident[:10].mean()  # still as anomalous at its end
    assert np.median(scores[3060:3500]) < 1.5  # and the model is as before once it is over
    assert abs(det.mean[4]) < 0.2


def test_without_the_gate_the_same_incident_would_leak_into_the_model() -> None:
    # the contrast that makes the previous test meaningful: learning everything moves the mean
    X = rows(6000)
    X[3000:3060, 4] += 8.0
    gated, open_door = model(), model(gate=1e9)
    gated.process_many(X[:3060])
    open_door.process_many(X[:3060])
    assert abs(open_door.mean[4]) > abs(gated.mean[4]) + 0.1


def test_batching_does_not_change_the_scores() -> None:
    X = rows(2000)
    X[1500:1700, 1] += 6.0
    whole = model().process_many(X)
    pieces = model()
    cuts = [0, 1, 7, 40, 333, 334, 1000, 1999, 2000]
    streamed = np.concatenate([pieces.process_many(X[a:b]) for a, b in itertools.pairwise(cuts)])
    np.testing.assert_allclose(streamed, whole, rtol=1e-12, atol=1e-12)  # BLAS may sum a row differently by shape


def test_deterministic_and_causal() -> None:
    X = rows(2000)
    first, second = model().process_many(X), model().process_many(X)
    np.testing.assert_array_equal(first, second)
    changed = X.copy()
    changed[1500:] += 50.0
    np.testing.assert_array_equal(model().process_many(changed)[:1500], first[:1500])


def test_score_many_does_not_learn() -> None:
    det = model()
    det.process_many(rows(1000))
    blob = json.dumps(det.snapshot())
    det.score_many(rows(50, seed=1) + 5.0)
    assert json.dumps(det.snapshot()) == blob


def test_snapshot_restore_continues_identically() -> None:
    X = rows(3000)
    X[2000:, :2] += 6.0  # a shift in progress when the snapshot is taken
    det = model()
    det.process_many(X[:2100])
    twin = AdaptiveMSPC()
    twin.restore(json.loads(json.dumps(det.snapshot())))  # plain lists and numbers only
    assert twin.accept_after == ACCEPT and twin.features == FEATURES
    np.testing.assert_array_equal(twin.process_many(X[2100:]), det.process_many(X[2100:]))


def test_missing_values_and_a_new_feature() -> None:
    det = model()
    X = rows(1000)
    X[::7, 2] = np.nan
    assert np.isfinite(det.process_many(X)).all()
    assert np.isfinite(det.mean).all()
    det.learn_one({"cpu": 0.0, "gpu_temp": 60.0})
    assert det.features == [*FEATURES, "gpu_temp"]
    assert len(det.pending) == 1001 % det.chunk  # waits for its chunk to complete
    det.learn_many(np.column_stack((rows(40, seed=3), np.full(40, 60.0))))
    assert det.mean[-1] == 60.0 and det.cov.shape == (7, 7)
    assert np.isfinite(det.score_many(rows(3))).all()  # rows without the new column: missing there
    twin = AdaptiveMSPC()
    twin.restore(json.loads(json.dumps(det.snapshot())))
    probe = np.column_stack((rows(5, seed=2), np.full(5, 61.0)))
    np.testing.assert_array_equal(twin.score_many(probe), det.score_many(probe))


def test_bad_input_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 6 features"):
        model().process_many(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="half_life"):
        AdaptiveMSPC(FEATURES, half_life=0.0)
    with pytest.raises(ValueError, match="accept_after"):
        AdaptiveMSPC(FEATURES, accept_after=0)
    with pytest.raises(ValueError, match="gate"):
        AdaptiveMSPC(FEATURES, gate=-1.0)
    with pytest.raises(ValueError, match="chunk"):
        AdaptiveMSPC(FEATURES, chunk=0)
    with pytest.raises(ValueError, match="warmup"):
        AdaptiveMSPC(FEATURES, warmup=1)
    with pytest.raises(ValueError, match="snapshot is mspc"):
        AdaptiveMSPC().restore({"name": "mspc", "version": 1, "features": [], "state": {}})
