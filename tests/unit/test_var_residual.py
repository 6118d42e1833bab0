"""The VAR forecast residual: a batch-equal fit, a broken dynamic that stays in range, constant metrics."""

from __future__ import annotations

import numpy as np
import pytest
from vigil.analytics.models import registry
from vigil.analytics.models.forecast import VARResidual


def var1(rows: int, seed: int = 0) -> np.ndarray:
    """Two metrics: the first an AR(1) with coefficient 0.9, the second following the first one row later."""
    rng = np.random.default_rng(seed)
    x = np.zeros((rows, 2))
    for t in range(1, rows):
        x[t, 0] = 0.9 * x[t - 1, 0] + rng.normal(0, 1)
        x[t, 1] = 0.8 * x[t - 1, 0] + rng.normal(0, 0.1)
    return x


def test_normal_rows_score_about_one_and_the_fit_equals_least_squares() -> None:
    X = var1(20_000)
    model = VARResidual(["a", "b"], lags=1, ridge=1e-9)
    for chunk in np.array_split(X, 7):  # streaming statistics: any batching gives the batch fit
        model.learn_many(chunk)
    whole = VARResidual(["a", "b"], lags=1, ridge=1e-9)
    whole.learn_many(X)
    later = var1(5_000, seed=1)
    np.testing.assert_allclose(model.score_many(later), whole.score_many(later), rtol=1e-6)
    assert model.score_many(later).mean() == pytest.approx(1.0, abs=0.1)
    forecast = model._forecast  # fitted lazily by the score above
    assert forecast is not None
    # the regression in range-scaled units, read back into the metrics' own units (Yule-Walker: ~ least squares)
    scale = forecast.scale
    coef = forecast.coef / scale[:, None] * scale[None, :]
    lstsq = np.linalg.lstsq(np.column_stack((X[:-1], np.ones(len(X) - 1))), X[1:], rcond=None)[0][:2]
    np.testing.assert_allclose(coef, lstsq, atol=2e-3)
    np.testing.assert_allclose(coef, [[0.9, 0.8], [0.0, 0.0]], atol=0.03)


def test_a_broken_dynamic_within_the_normal_range_scores_high_and_is_explained() -> None:
    model = VARResidual(["a", "b"], lags=1)
    model.learn_many(var1(20_000))
    test = var1(2_000, seed=2)
    test[1_000:1_050, 1] = -test[999:1_049, 0] * 0.8  # b turns against a: each value stays in b's usual range
    scores = model.score_many(test)
    assert np.abs(test[1_000:1_050, 1]).max() <= np.abs(test[:, 1]).max()
    assert np.median(scores[1_001:1_050]) > 10 * np.median(scores[:1_000])
    shares = model.explain_many(test[1_001:1_050])
    assert (np.nanargmax(shares, axis=1) == 1).mean() > 0.9  # the blame falls on b


def test_a_metric_constant_in_training_counts_in_full_when_it_moves() -> None:
    X = np.column_stack((var1(5_000)[:, 0], np.full(5_000, 7.0)))
    model = VARResidual(["a", "flat"], lags=2, cap=10.0)
    model.learn_many(X)
    row = np.array([[X[-1, 0] * 0.9, 7.001]])  # a twitch of the flat metric
    assert model.score_many(row)[0] >= 10.0**2 / 2 - 1  # capped at 10 units, averaged over two metrics
    assert model.score_many(np.array([[X[-1, 0] * 0.9, 7.0]]))[0] < 5


def test_options_are_validated_and_registered() -> None:
    assert isinstance(registry.create("var_residual", {"lags": 3}, ["a"]), VARResidual)
    for bad in ({"lags": 0}, {"ridge": 0.0}, {"cap": -1.0}):
        with pytest.raises(ValueError):
            VARResidual(["a"], **bad)
