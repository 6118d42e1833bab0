"""The Detector API contract on this branch's models (seasonal, multivariate, peers, frozen, changepoint).

Each model is run on a seeded stream it can learn from (small windows so the fits happen within
the test); checks: finite scores before learning, scoring never mutates, missing and new features,
process_many == score-then-learn, snapshot -> msgpack -> restore scores the same, seeded runs are
identical, and the state stops growing with the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
from vigil.analytics.models import autoencoder, changepoint, iforest, pca, peers, seasonal, truthfulness
from vigil.analytics.models.base import Detector

SMALL: dict[str, dict[str, Any]] = {
    "seasonal": {"period": 12, "buffer": 96, "refit_every": 32, "min_fit": 24},
    "iforest": {"window": 64, "refit_every": 32, "min_fit": 16, "trees": 20},
    "pca": {"window": 64, "refit_every": 32, "min_fit": 16},
    "autoencoder": {"window": 64, "refit_every": 32, "min_fit": 16, "epochs": 3},
    "changepoint": {"warmup": 5},
    "frozen": {"warmup": 5},
}
MODELS: dict[str, type[Detector]] = {
    name: cls
    for module in (seasonal, iforest, pca, autoencoder, peers, truthfulness, changepoint)
    for name, cls in module.MODELS.items()
}
FEATURES = ["a", "b", "c", "d"]
# torch computes in float32, and a batch of rows need not round like one row at a time
RTOL = {"autoencoder": 1e-5}


def make(name: str, features: list[str] = FEATURES) -> Detector:
    model: Detector = MODELS[name](features, **SMALL.get(name, {}))
    return model


def stream(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)[:, None]
    x = 10 + np.sin(2 * np.pi * t / 12) + 0.1 * rng.normal(size=(rows, len(FEATURES)))
    return np.round(x, 2)  # rounding gives the frozen model repeats to count


def roundtrip(model: Detector) -> dict[str, Any]:
    blob: dict[str, Any] = msgpack.unpackb(msgpack.packb(model.snapshot(), use_bin_type=True), raw=False)
    return blob


names = pytest.mark.parametrize("name", sorted(MODELS))


@names
def test_scores_are_finite_and_zero_or_more_before_any_learning(name: str) -> None:
    model = make(name)
    assert np.all(np.isfinite(model.score_many(stream(5))))
    assert np.isfinite(model.score_one({"a": 1.0, "zzz": 2.0}))


@names
def test_scoring_never_mutates_and_process_many_is_score_then_learn(name: str) -> None:
    X = stream(150)
    looped, batched = make(name), make(name)
    looped.process_many(X[:100])
    batched.process_many(X[:100])
    before = roundtrip(looped)
    looped.score_many(X[100:])
    looped.score_one({"a": 3.0, "new": 1.0})
    assert roundtrip(looped) == before and "new" not in looped.features
    expected = []
    for row in X[100:]:
        x = dict(zip(FEATURES, row.tolist(), strict=True))
        expected.append(looped.score_one(x))
        looped.learn_one(x)
    np.testing.assert_allclose(batched.process_many(X[100:]), expected, rtol=RTOL.get(name, 1e-9), atol=1e-12)
    assert max(expected) > 0  # the model did score something


@names
def test_missing_and_new_features_are_tolerated(name: str) -> None:
    model = make(name)
    X = stream(120)
    X[::7, 1] = np.nan
    model.process_many(X)
    model.learn_one({"a": 10.0, "e": 5.0})  # a new feature, the others missing
    assert model.features == [*FEATURES, "e"]
    scores = model.process_many(np.column_stack([stream(60, 1), np.full(60, 5.0)]))
    assert np.all(np.isfinite(scores))
    with pytest.raises(ValueError, match="features"):
        model.learn_many(np.zeros((2, 9)))


@names
def test_snapshot_through_msgpack_restores_the_same_scores(name: str) -> None:
    X = stream(300)
    model = make(name)
    model.process_many(X[:170])
    clone = make(name, [])
    clone.restore(roundtrip(model))
    np.testing.assert_allclose(clone.process_many(X[170:]), model.process_many(X[170:]), rtol=1e-9, atol=1e-12)


@names
def test_seeded_runs_are_identical_and_state_is_bounded(name: str) -> None:
    X = stream(600)
    first, second = make(name), make(name)
    np.testing.assert_array_equal(first.process_many(X), second.process_many(X))
    size: Callable[[Detector], int] = lambda m: len(msgpack.packb(m.snapshot(), use_bin_type=True))  # noqa: E731
    at_600 = size(first)
    first.process_many(stream(1200, 2))
    assert size(first) <= at_600 * 1.05 + 64


def test_restoring_another_model_is_refused() -> None:
    blob = make("pca").snapshot()
    with pytest.raises(ValueError, match="snapshot is pca"):
        make("iforest").restore(blob)
