"""The conformance checks catch what they are for: each broken model below fails its check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from vigil.analytics.models import checks
from vigil.analytics.models.base import FloatArray
from vigil.analytics.models.robust import RobustZ


class MutatesOnScore(RobustZ):
    name = "mutates_on_score"

    def score_many(self, X: FloatArray) -> FloatArray:
        self.learn_many(np.asarray(X, dtype=np.float64))  # learning while scoring: the classic leak
        return super().score_many(X)


class KeepsEverything(RobustZ):
    name = "keeps_everything"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[list[float]] = []

    def learn_many(self, X: FloatArray) -> None:
        super().learn_many(X)
        self.seen.extend(np.nan_to_num(np.asarray(X)).tolist())

    def state(self) -> dict[str, Any]:
        return {**super().state(), "seen": self.seen}


class ForgetsOnRestore(RobustZ):
    name = "forgets_on_restore"

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state({k: [0] * len(v) for k, v in state.items()})


class AcceptsAnySnapshot(RobustZ):
    name = "accepts_any_snapshot"

    def restore(self, blob: Mapping[str, Any]) -> None:
        self.features = list(blob["features"])
        self.load_state(blob["state"])


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (MutatesOnScore, checks.check_scoring_does_not_mutate, "changed the snapshot"),
        (KeepsEverything, checks.check_state_is_bounded, "state grew"),
        (ForgetsOnRestore, checks.check_snapshot_restores_the_same_scores, "restored model scores differently"),
        (AcceptsAnySnapshot, checks.check_foreign_snapshot_is_refused, "restored a snapshot of"),
    ],
)
def test_a_broken_model_fails_its_check(cls: type[RobustZ], check: checks.Check, message: str) -> None:
    checks.check_model(RobustZ)  # the model they break passes every check
    with pytest.raises(AssertionError, match=message):
        check(checks.Subject(cls))


def test_yield_checks_adds_the_bank_check_only_for_models_with_a_bank() -> None:
    from vigil.analytics.models.pca import PCADetector

    robust = [c.__name__ for c in checks.yield_checks(RobustZ)]
    pca = [c.__name__ for c in checks.yield_checks(PCADetector)]
    assert "check_bank_agrees_with_single_models" in robust
    assert "check_bank_agrees_with_single_models" not in pca
    assert len(robust) == len(checks.CHECKS) + 1 and len(pca) == len(checks.CHECKS)
