"""IsolationForest, PCA and the autoencoder on a host-like stream: correlated features, injected faults."""

from __future__ import annotations

import numpy as np
import pytest
from vigil.analytics.models.iforest import IsolationForestDetector
from vigil.analytics.models.pca import PCADetector
from vigil.analytics.models.window import robust_scaling

FEATURES = [f"m{i}" for i in range(12)]


def host(rows: int, seed: int = 0) -> np.ndarray:
    """Twelve series driven by three load factors (power follows utilisation, temperature follows power)."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(3, len(FEATURES)))
    return 50 + 10 * rng.normal(size=(rows, 3)) @ mixing + rng.normal(0, 0.5, (rows, len(FEATURES)))


def broken(X: np.ndarray, rows: list[int]) -> np.ndarray:
    """Rows whose every feature stays inside its usual range but whose correlations are broken."""
    out = X.copy()
    rng = np.random.default_rng(5)
    for r in rows:
        out[r] = [rng.choice(X[:, j]) for j in range(X.shape[1])]  # each value drawn from its own marginal
    return out


def test_robust_scaling_falls_back_for_constant_and_missing_columns() -> None:
    X = np.column_stack([np.arange(100.0), np.full(100, 7.0), np.full(100, np.nan), np.r_[np.zeros(90), np.ones(10)]])
    center, scale = robust_scaling(X)
    np.testing.assert_allclose(center, [49.5, 7.0, 0.0, 0.0])
    assert scale[0] == pytest.approx(49.5 / 1.349)
    assert scale[1] == pytest.approx(7e-3)  # constant: the relative floor, not a division by zero
    assert scale[2] == 1.0
    assert scale[3] == pytest.approx(0.3)  # IQR 0: the standard deviation


def test_pca_flags_rows_that_break_the_correlations_though_every_value_is_in_range() -> None:
    X = host(2400)
    faults = list(range(1800, 2400, 60))
    scores = PCADetector(FEATURES, window=512, refit_every=128).process_many(broken(X, faults))
    normal = np.delete(scores[1000:], [f - 1000 for f in faults])
    assert np.all(scores[faults] > np.quantile(normal, 0.999))


def test_iforest_flags_rows_far_out_on_several_features() -> None:
    X = host(1600)
    faults = list(range(1000, 1600, 40))
    X[np.ix_(faults, range(6))] += 6 * X[:1000, :6].std(axis=0)  # half the host's series jump together
    scores = IsolationForestDetector(FEATURES, window=512, refit_every=256).process_many(X)
    normal = np.delete(scores[600:], [f - 600 for f in faults])
    assert np.all(scores[faults] > np.quantile(normal, 0.99))
    # IsolationForest judges marginals: it does not see broken correlations, which is PCA's job.
    mixed = IsolationForestDetector(FEATURES, window=512, refit_every=256).process_many(broken(host(1600), faults))
    assert np.mean(mixed[faults] > np.quantile(np.delete(mixed[600:], [f - 600 for f in faults]), 0.99)) < 0.5


def test_a_huge_value_is_clipped_so_scores_stay_finite_and_pca_ranks_it_first() -> None:
    X = host(1200)
    X[1100, 4] = 1e12
    pca = PCADetector(FEATURES, window=512, refit_every=128).process_many(X)
    assert int(np.argmax(pca)) == 1100
    assert pca[1100] == pytest.approx(pca[1100])  # finite, not inf/nan
    forest = IsolationForestDetector(FEATURES, window=512, refit_every=128).process_many(X)
    assert np.isfinite(forest).all()


def test_score_is_zero_until_the_first_fit_then_refits_every_n_rows() -> None:
    model = PCADetector(FEATURES, window=256, refit_every=100, min_fit=64)
    X = host(500)
    assert not model.process_many(X[:64]).any()
    assert model.fit is not None and model.fit.at == 64 and model.fit.rows == 64
    model.process_many(X[64:500])
    assert model.fit.at == 464 and model.fit.rows == 256  # 64 + 4 x 100, on the last window rows
    assert model.ring.capacity == 356  # window + refit_every: memory does not grow with the stream


def test_iforest_is_seeded() -> None:
    X = host(800)
    a = IsolationForestDetector(FEATURES, window=256, trees=30, seed=1).process_many(X)
    b = IsolationForestDetector(FEATURES, window=256, trees=30, seed=1).process_many(X)
    c = IsolationForestDetector(FEATURES, window=256, trees=30, seed=2).process_many(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_restored_model_whose_fit_rows_left_the_ring_refits_on_what_it_holds() -> None:
    X = host(1000)
    model = IsolationForestDetector(FEATURES, window=128, refit_every=0, min_fit=64)
    model.process_many(X[:600])  # fitted once at 64 rows, then 536 rows with no refit()
    clone = IsolationForestDetector([], window=128, refit_every=0)
    clone.restore(model.snapshot())
    assert clone.fit is not None and clone.fit.at == 600 and clone.fit.rows == 128
    assert np.isfinite(clone.score_many(X[600:])).all()


def test_autoencoder_reconstructs_correlated_rows_and_flags_broken_ones() -> None:
    pytest.importorskip("torch")
    from vigil.analytics.models.autoencoder import AutoencoderDetector

    X = host(1100)
    faults = list(range(800, 1100, 30))
    model = AutoencoderDetector(FEATURES, window=512, refit_every=0)
    model.learn_many(X[:512])
    model.refit()  # with refit_every=0 the service refits on its timer: here, once, on all 512 rows
    scores = model.score_many(broken(X, faults)[512:])
    normal = np.delete(scores, [f - 512 for f in faults])
    assert np.all(scores[[f - 512 for f in faults]] > np.quantile(normal, 0.99))
