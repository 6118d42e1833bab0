"""Every model in the registry honours the detector API, with the same checks.

Parametrised over ``registry.names()``, so a model added to ``MODELS`` is checked without touching
this file. Models are created with their default options: a model with randomness must default to
a fixed seed. The stream: three features (a noisy level with a daily-like wave, zero-mean noise, a
small count), with gaps (NaN) and a few spikes.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from vigil.analytics.models import registry
from vigil.analytics.models.base import Detector, SnapshotMismatch
from vigil.analytics.models.columns import ArrayStore

FEATURES = ["a", "b", "c"]
NAMES = registry.names()


def stream(rows: int, seed: int = 0, start: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(start, start + rows)
    X = np.column_stack(
        [
            50 + 5 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, rows),
            rng.normal(0, 1, rows),
            rng.poisson(3, rows).astype(float),
        ]
    )
    X[rng.random(X.shape) < 0.02] = np.nan
    spikes = rng.random(rows) < 0.01
    X[spikes, 0] += 40
    return X


def make(name: str, features: list[str] | None = None) -> Detector:
    return registry.create(name, features=FEATURES if features is None else features)


def packed(model: Detector) -> bytes:
    out: bytes = msgpack.packb(model.snapshot(), use_bin_type=True)  # also proves it is msgpack-able
    return out


def learn_in_chunks(model: Detector, X: np.ndarray, chunk: int = 1000) -> None:
    for i in range(0, len(X), chunk):
        model.learn_many(X[i : i + chunk])


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_is_a_detector_named_as_registered(name: str) -> None:
    cls = registry.model_class(name)
    assert issubclass(cls, Detector) and cls.name == name
    assert isinstance(cls.version, int)


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_finite_before_any_learning(name: str) -> None:
    model = make(name)
    scores = model.score_many(stream(20))
    assert scores.shape == (20,) and np.isfinite(scores).all()
    assert np.isfinite(model.score_one({"a": 1.0, "b": 2.0, "c": 3.0}))
    bare = make(name, features=[])
    assert np.isfinite(bare.score_one({"x": 1.0})) and bare.features == []  # scoring adds no feature


@pytest.mark.parametrize("name", NAMES)
def test_scoring_and_explaining_do_not_mutate(name: str) -> None:
    model = make(name)
    learn_in_chunks(model, stream(400))
    before = packed(model)
    X = stream(50, seed=1)
    model.score_many(X)
    model.score_one({"a": 99.0, "b": 0.0, "c": 1.0})
    model.score_one({"a": 1.0, "new_feature": 5.0})
    explained = model.explain_many(X)
    assert explained.shape == X.shape
    assert packed(model) == before


@pytest.mark.parametrize("name", NAMES)
def test_missing_and_new_features_are_tolerated(name: str) -> None:
    model = make(name)
    X = stream(300)
    X[:, 2] = np.nan  # one feature never reported
    learn_in_chunks(model, X)
    assert np.isfinite(model.score_many(stream(10, seed=2))).all()
    model.learn_one({"a": 50.0, "d": 1.0})  # b and c missing, d new
    assert model.features == [*FEATURES, "d"]
    assert np.isfinite(model.score_one({"a": 50.0, "b": 0.0, "d": 1.0}))
    wider = np.column_stack([stream(50, seed=3), np.ones(50)])
    assert np.isfinite(model.process_many(wider)).all()


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_then_restore_gives_identical_subsequent_scores(name: str) -> None:
    first = make(name)
    learn_in_chunks(first, stream(600))
    blob = msgpack.unpackb(packed(first), raw=False, strict_map_key=False)  # through bytes, as stored
    second = make(name, features=[])
    second.restore(blob)
    assert second.features == first.features
    later = stream(200, seed=4, start=600)
    np.testing.assert_array_equal(first.process_many(later), second.process_many(later))


@pytest.mark.parametrize("name", NAMES)
def test_seeded_runs_are_deterministic(name: str) -> None:
    X = stream(500, seed=5)
    np.testing.assert_array_equal(make(name).process_many(X), make(name).process_many(X))


@pytest.mark.parametrize("name", NAMES)
def test_process_many_scores_each_row_before_learning_it(name: str) -> None:
    X = stream(80, seed=6)
    vectorised = make(name).process_many(X)
    model = make(name)
    looped: list[float] = []
    step = model.block  # 1 for most models: row by row (see the base module's note on block)
    for i in range(0, len(X), step):
        looped.extend(model.score_many(X[i : i + step]))
        model.learn_many(X[i : i + step])
    np.testing.assert_allclose(vectorised, looped, rtol=1e-9, atol=1e-12)
    assert np.isfinite(vectorised).all()


@pytest.mark.parametrize("name", NAMES)
def test_state_stays_bounded_as_the_stream_grows(name: str) -> None:
    # Models may keep bounded windows (a day of 10-s samples is 8,640 rows), so the state must
    # have stopped growing by 12k rows: 12k more rows add at most 10% (plus slack for counters).
    model = make(name)
    X = stream(24_000, seed=7)
    learn_in_chunks(model, X[:12_000])
    at_12k = len(msgpack.packb(model.state(), use_bin_type=True))
    learn_in_chunks(model, X[12_000:])
    at_24k = len(msgpack.packb(model.state(), use_bin_type=True))
    assert at_24k <= 1.1 * at_12k + 4096, (at_12k, at_24k)
    assert at_24k <= 4 << 20, "a model's state should fit in a few MB per stream"


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_of_another_model_or_version_is_rejected(name: str) -> None:
    model = make(name)
    model.learn_many(stream(50))
    blob: dict[str, Any] = model.snapshot()
    for wrong in ({**blob, "name": name + "_other"}, {**blob, "version": blob["version"] + 1}):
        with pytest.raises(SnapshotMismatch):
            make(name).restore(wrong)


BANKS = [n for n in NAMES if registry.model_class(n).make_bank({}, ArrayStore()) is not None]


@pytest.mark.parametrize("name", BANKS)
def test_bank_form_agrees_with_the_detector_on_each_series(name: str) -> None:
    """The vectorised form over k series equals k single-feature detectors run one by one."""
    X = stream(300, seed=8)
    store = ArrayStore(3)
    bank = registry.model_class(name).make_bank({}, store, prefix="m_")
    assert bank is not None
    assert all(c.startswith("m_") and store.col(c).size == 3 for c in bank.columns())
    slots = np.arange(3)
    banked = np.array([bank.process(slots, row) for row in X])
    for j in range(3):
        single = make(name, features=[FEATURES[j]]).process_many(X[:, j : j + 1])
        np.testing.assert_allclose(np.abs(banked[:, j]), single, rtol=1e-12)
