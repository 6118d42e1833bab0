"""Conformance checks every model must pass, shipped with the library (River's ``check_estimator``).

A model is checked through its class and options (``cls.test_options()`` by default: small
windows so that its fits happen within the checks). Each check builds fresh models, feeds them one
seeded stream (three features: a noisy level with a slow wave, zero-mean noise and a small count,
with 2% gaps and 1% spikes) and raises ``AssertionError`` saying what broke::

    from vigil.analytics.models.checks import check_model
    check_model(MyModel)                      # every check, or
    for check in yield_checks(MyModel): ...   # one at a time (the contract suite parametrises them)

What is checked (DESIGN §6): finite scores before any learning; scoring and explaining do not
mutate; missing and new features are tolerated and wider rows refused; snapshot -> msgpack bytes
-> restore gives identical later scores; seeded runs are identical; ``process_many`` equals
score-then-learn (by ``block`` rows); state stops growing with the stream; a snapshot of another
model or version is refused; a bank form agrees with single-feature models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
from vigil.analytics.models.base import Detector, FloatArray, SnapshotMismatch
from vigil.analytics.models.columns import ArrayStore

FEATURES = ("a", "b", "c")
STATE_ROWS = 6_000  # the state after this many rows and after twice as many must be about the same
STATE_LIMIT = 4 << 20  # a model's state should fit in a few MB per stream


@dataclass(frozen=True)
class Subject:
    """A model class with the options to check it with."""

    cls: type[Detector]
    options: Mapping[str, Any] = field(default_factory=dict)

    def make(self, features: tuple[str, ...] | list[str] = FEATURES) -> Detector:
        return self.cls.from_config(self.options, list(features), key=f"{self.cls.name}.options")


Check = Callable[[Subject], None]


def stream(rows: int, seed: int = 0, start: int = 0) -> FloatArray:
    """The checks' input: see the module docstring. Rows ``start`` on, so a stream can be continued."""
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
    X[rng.random(rows) < 0.01, 0] += 40
    return X


def _expect(ok: bool | np.bool_, message: str) -> None:
    """An assertion that ``python -O`` keeps: a check must not pass because asserts were stripped."""
    if not ok:
        raise AssertionError(message)


def packed(model: Detector) -> bytes:
    out: bytes = msgpack.packb(model.snapshot(), use_bin_type=True)  # also proves it is msgpack-able
    return out


def _learn(model: Detector, X: FloatArray, chunk: int = 1000) -> None:
    for i in range(0, len(X), chunk):
        model.learn_many(X[i : i + chunk])


def _same(a: FloatArray, b: FloatArray, subject: Subject, what: str) -> None:
    np.testing.assert_allclose(a, b, rtol=subject.cls.check_rtol, atol=1e-12, err_msg=f"{subject.cls.name}: {what}")


def check_scores_before_learning(subject: Subject) -> None:
    model = subject.make()
    scores = model.score_many(stream(20))
    ok = scores.shape == (20,) and bool(np.isfinite(scores).all())
    _expect(ok, f"{subject.cls.name}: scores before learning {scores}")
    _expect(np.isfinite(model.score_one({"a": 1.0, "b": 2.0, "c": 3.0})), f"{subject.cls.name}: score_one not finite")
    bare = subject.make([])
    _expect(np.isfinite(bare.score_one({"x": 1.0})), f"{subject.cls.name}: no finite score with no features")
    _expect(bare.features == [], f"{subject.cls.name}: scoring added a feature")


def check_scoring_does_not_mutate(subject: Subject) -> None:
    model = subject.make()
    _learn(model, stream(400))
    before = packed(model)
    X = stream(50, seed=1)
    model.score_many(X)
    model.score_one({"a": 99.0, "b": 0.0, "c": 1.0})
    model.score_one({"a": 1.0, "new_feature": 5.0})
    explained = model.explain_many(X)
    _expect(explained.shape == X.shape, f"{subject.cls.name}: explain_many gave shape {explained.shape}")
    _expect(packed(model) == before, f"{subject.cls.name}: scoring or explaining changed the snapshot")
    _expect("new_feature" not in model.features, f"{subject.cls.name}: scoring added a feature")


def check_missing_and_new_features(subject: Subject) -> None:
    model = subject.make()
    X = stream(300)
    X[:, 2] = np.nan  # one feature never reported
    _learn(model, X)
    _expect(np.isfinite(model.score_many(stream(10, seed=2))).all(), f"{subject.cls.name}: a missing feature")
    model.learn_one({"a": 50.0, "d": 1.0})  # b and c missing, d new
    _expect(model.features == [*FEATURES, "d"], f"{subject.cls.name}: features {model.features} after a new one")
    _expect(np.isfinite(model.score_one({"a": 50.0, "b": 0.0, "d": 1.0})), f"{subject.cls.name}: a new feature")
    wider = np.column_stack([stream(50, seed=3), np.ones(50)])
    _expect(np.isfinite(model.process_many(wider)).all(), f"{subject.cls.name}: rows with the new feature")
    try:
        model.learn_many(np.zeros((2, 9)))
    except ValueError:
        return
    raise AssertionError(f"{subject.cls.name}: rows wider than its features were accepted")


def check_snapshot_restores_the_same_scores(subject: Subject) -> None:
    first = subject.make()
    _learn(first, stream(600))
    blob = msgpack.unpackb(packed(first), raw=False, strict_map_key=False)  # through bytes, as stored
    second = subject.make([])
    second.restore(blob)
    _expect(second.features == first.features, f"{subject.cls.name}: restored features {second.features}")
    later = stream(200, seed=4, start=600)
    _same(first.process_many(later), second.process_many(later), subject, "restored model scores differently")


def check_seeded_runs_are_identical(subject: Subject) -> None:
    X = stream(500, seed=5)
    first, second = subject.make().process_many(X), subject.make().process_many(X)
    np.testing.assert_array_equal(first, second, err_msg=f"{subject.cls.name}: two runs differ")


def check_process_many_scores_before_learning(subject: Subject) -> None:
    X = stream(600, seed=6)
    vectorised = subject.make().process_many(X)
    model = subject.make()
    looped: list[float] = []
    step = model.block  # 1 for most models (see the base module's note on block)
    for i in range(0, len(X), step):
        looped.extend(model.score_many(X[i : i + step]))
        model.learn_many(X[i : i + step])
    _same(vectorised, np.asarray(looped), subject, "process_many is not score-then-learn")
    _expect(np.isfinite(vectorised).all(), f"{subject.cls.name}: non-finite scores")
    _expect(vectorised.max() > 0, f"{subject.cls.name}: scored nothing above 0 in 600 rows")


def check_state_is_bounded(subject: Subject) -> None:
    model = subject.make()
    X = stream(2 * STATE_ROWS, seed=7)
    _learn(model, X[:STATE_ROWS])
    first = len(msgpack.packb(model.state(), use_bin_type=True))
    _learn(model, X[STATE_ROWS:])
    second = len(msgpack.packb(model.state(), use_bin_type=True))
    _expect(second <= 1.1 * first + 4096, f"{subject.cls.name}: state grew from {first} to {second} bytes")
    _expect(second <= STATE_LIMIT, f"{subject.cls.name}: state of {second} bytes for one stream")


def check_foreign_snapshot_is_refused(subject: Subject) -> None:
    model = subject.make()
    model.learn_many(stream(50))
    blob: dict[str, Any] = model.snapshot()
    for wrong in ({**blob, "name": blob["name"] + "_other"}, {**blob, "version": blob["version"] + 1}):
        try:
            subject.make().restore(wrong)
        except SnapshotMismatch:
            continue
        raise AssertionError(f"{subject.cls.name}: restored a snapshot of {wrong['name']} v{wrong['version']}")


def check_bank_agrees_with_single_models(subject: Subject) -> None:
    """The vectorised form over k series equals k single-feature models run one by one."""
    X = stream(300, seed=8)
    store = ArrayStore(3)
    bank = subject.cls.make_bank(subject.options, store, prefix="m_")
    if bank is None:
        raise AssertionError(f"{subject.cls.name}: make_bank gave no bank")
    _expect(all(c.startswith("m_") and store.col(c).size == 3 for c in bank.columns()), "bank columns")
    slots = np.arange(3)
    banked = np.array([bank.process(slots, row) for row in X])
    for j in range(3):
        single = subject.make([FEATURES[j]]).process_many(X[:, j : j + 1])
        _same(np.abs(banked[:, j]), single, subject, f"bank and single model differ on feature {j}")


CHECKS: tuple[Check, ...] = (
    check_scores_before_learning,
    check_scoring_does_not_mutate,
    check_missing_and_new_features,
    check_snapshot_restores_the_same_scores,
    check_seeded_runs_are_identical,
    check_process_many_scores_before_learning,
    check_state_is_bounded,
    check_foreign_snapshot_is_refused,
)


def yield_checks(cls: type[Detector], options: Mapping[str, Any] | None = None) -> Iterator[Callable[[], None]]:
    """Every check that applies to ``cls``, each ready to call (named as the check it runs)."""
    subject = Subject(cls, cls.test_options() if options is None else options)
    applicable = list(CHECKS)
    if cls.make_bank(subject.options, ArrayStore()) is not None:
        applicable.append(check_bank_agrees_with_single_models)
    for check in applicable:
        yield _bound(check, subject)


def _bound(check: Check, subject: Subject) -> Callable[[], None]:
    def run() -> None:
        check(subject)

    run.__name__ = check.__name__
    return run


def check_model(cls: type[Detector], options: Mapping[str, Any] | None = None) -> None:
    """Run every check on ``cls``; the first that fails raises AssertionError."""
    for check in yield_checks(cls, options):
        check()
