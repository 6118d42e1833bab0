"""The MSPC detector: streaming equals batch, both kinds of anomaly seen, missing data, state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vigil.analytics.models import registry
from vigil.analytics.models.mspc import MSPCDetector

FEATURES = ["cpu", "load", "net", "disk"]


def correlated(n: int, seed: int = 0) -> np.ndarray:
    """cpu, load and net follow one driver; disk is independent noise."""
    rng = np.random.default_rng(seed)
    driver = rng.normal(50, 10, n)
    return np.column_stack(
        (driver + rng.normal(0, 1, n), 0.1 * driver + rng.normal(0, 0.1, n), 3 * driver + rng.normal(0, 3, n),
         rng.normal(10, 1, n))
    )  # fmt: skip


def fitted(X: np.ndarray) -> MSPCDetector:
    det = MSPCDetector(FEATURES)
    det.learn_many(X)
    return det


def test_registry_names_the_model() -> None:
    assert registry.model_class("mspc") is MSPCDetector


def test_knows_nothing_scores_zero() -> None:
    det = MSPCDetector(FEATURES)
    assert det.score_many(correlated(3)).tolist() == [0.0, 0.0, 0.0]


def test_streaming_batches_equal_one_batch() -> None:
    X = correlated(3000)
    whole = fitted(X)
    chunked = MSPCDetector(FEATURES)
    for part in np.array_split(X, 7):
        chunked.learn_many(part)
    np.testing.assert_allclose(chunked.mean, whole.mean)
    np.testing.assert_allclose(chunked.scatter, whole.scatter, rtol=1e-9)
    np.testing.assert_allclose(chunked.score_many(X[:50]), whole.score_many(X[:50]), rtol=1e-9)
    # and the scatter is the textbook one
    np.testing.assert_allclose(whole.scatter / (len(X) - 1), np.cov(X, rowvar=False), rtol=1e-9)


def test_training_rows_score_about_one() -> None:
    # both terms are divided by their training mean (with the n-1 covariance): in-sample mean is (n-1)/n
    X = correlated(2000)
    assert fitted(X).score_many(X).mean() == pytest.approx(1 - 1 / 2000, rel=1e-9)


def test_broken_relation_is_seen_by_the_residual() -> None:
    det = fitted(correlated(3000))
    normal = np.array([[50.0, 5.0, 150.0, 10.0]])
    broken = np.array([[50.0, 5.0, 50.0, 10.0]])  # net left its usual 3x cpu, every value within its range
    assert det.score_many(normal)[0] < 1.0
    assert det.score_many(broken)[0] > 20.0


def test_surge_along_the_main_direction_is_seen_by_t2() -> None:
    det = fitted(correlated(3000))
    surge = np.array([[110.0, 11.0, 330.0, 10.0]])  # all three six sigmas up, together, as usual
    # T² = 36 along the driver's component; with k = 2 components, (36/2 + Q/E[Q]) / 2 is about 9
    assert det.score_many(surge)[0] > 8.0


def test_missing_values_sit_at_the_mean() -> None:
    X = correlated(1000)
    det = fitted(X)
    assert det.score_many(np.full((1, 4), np.nan))[0] == 0.0
    mean_before = det.mean.copy()
    det.learn_many(np.full((5, 4), np.nan))
    np.testing.assert_allclose(det.mean, mean_before)
    assert np.isfinite(det.score_many(np.array([[np.nan, 5.0, 150.0, 10.0]]))).all()


def test_new_feature_from_a_mapping_is_added() -> None:
    det = fitted(correlated(500))
    det.learn_one({"cpu": 50.0, "gpu_temp": 60.0})
    assert det.features == [*FEATURES, "gpu_temp"]
    assert det.mean[-1] == 60.0
    # older rows without the new column are still accepted: it is missing there
    assert np.isfinite(det.score_many(correlated(3))).all()
    assert np.isfinite(det.score_one({"cpu": 50.0, "load": 5.0, "net": 150.0, "disk": 10.0, "gpu_temp": 61.0}))


def test_constant_feature_change_counts() -> None:
    X = np.column_stack((correlated(1000)[:, :2], np.zeros(1000)))  # an error counter that never moved
    det = MSPCDetector(["cpu", "load", "errors"])
    det.learn_many(X)
    row = X[:1].copy()
    assert det.score_many(row)[0] < 5.0
    row[0, 2] = 1.0
    assert det.score_many(row)[0] > 100.0


def test_wider_rows_than_features_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 4 features"):
        MSPCDetector(FEATURES).learn_many(np.zeros((2, 5)))


def test_snapshot_restore_gives_the_same_scores() -> None:
    X = correlated(800)
    det = fitted(X)
    det.learn_one({"cpu": 50.0, "gpu_temp": 60.0})  # a feature seen once: NaN-free state, partial history
    blob = json.loads(json.dumps(det.snapshot()))  # plain lists and numbers only
    twin = MSPCDetector()
    twin.restore(blob)
    rows = np.column_stack((X[:20], np.full(20, 60.0)))
    np.testing.assert_allclose(twin.score_many(rows), det.score_many(rows))


def test_process_many_scores_each_block_then_learns_it() -> None:
    X = correlated(600)
    det = fitted(X[:500])
    twin = fitted(X[:500])
    expected = []
    for start in range(500, 600, det.block):  # each block scored with the state from before it
        expected.append(twin.score_many(X[start : start + det.block]))
        twin.learn_many(X[start : start + det.block])
    np.testing.assert_allclose(det.process_many(X[500:]), np.concatenate(expected))
    assert det.n == 600


def test_lags_stream_like_one_batch_and_see_a_jump() -> None:
    X = correlated(3000)
    whole = MSPCDetector(FEATURES, lags=1)
    whole.learn_many(X)
    chunked = MSPCDetector(FEATURES, lags=1)
    for part in np.array_split(X, 5):
        chunked.learn_many(part)
    # equal but for the very first row, whose missing lag is imputed at its own batch's mean
    np.testing.assert_allclose(chunked.scatter, whole.scatter, rtol=1e-3)
    # the lagged block of the scatter is the covariance of x_t with x_t-1 (first row's lag is missing)
    np.testing.assert_allclose(whole.scatter[:4, 4:] / 2999, np.cov(X[1:], X[:-1], rowvar=False)[:4, 4:], rtol=0.01)
    # disk is noise around 10; a 4-sigma jump from its previous value is judged against that value only with lags
    rng = np.random.default_rng(5)
    jumpy = X[-1:].copy()
    jumpy[0, 3] = X[-1, 3] + 4 * rng.choice([-1.0, 1.0])  # a 4-sigma jump of disk from its previous value
    static = fitted(X)
    assert whole.score_many(jumpy)[0] > static.score_many(jumpy)[0]


def test_lags_grow_and_restore() -> None:
    det = MSPCDetector(FEATURES, lags=2)
    det.learn_many(correlated(400))
    det.learn_one({"cpu": 50.0, "gpu_temp": 60.0})
    assert det.scatter.shape == (15, 15) and det.recent.shape == (2, 5)
    twin = MSPCDetector()
    twin.restore(json.loads(json.dumps(det.snapshot())))
    rows = np.column_stack((correlated(10, seed=3), np.full(10, 60.0)))
    np.testing.assert_allclose(twin.score_many(rows), det.score_many(rows))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="variance_kept"):
        MSPCDetector(FEATURES, variance_kept=1.0)
    with pytest.raises(ValueError, match="lags"):
        MSPCDetector(FEATURES, lags=-1)
