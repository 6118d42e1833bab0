"""NAB's scoring rules on hand-made files, each figure worked out from the rule by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from vigil.analytics.eval.nab_scoring import (
    PROFILES,
    layout,
    normalise,
    null_score,
    perfect_score,
    probationary_length,
    scaled_sigmoid,
    score_file,
    sweep,
)

STANDARD = PROFILES[0]


def sig(x: float) -> float:
    return -1.0 if x >= 3 else 2 / (1 + math.exp(5 * x)) - 1


def test_probationary_period() -> None:
    assert probationary_length(1000) == 150
    assert probationary_length(1243) == 186
    assert probationary_length(22695) == 750  # capped at 0.15 * 5000


def test_scaled_sigmoid_landmarks() -> None:
    got = scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 3.0, 10.0]))
    np.testing.assert_allclose(got, [0.98661, 0.84828, 0.0, -0.98661, -1.0, -1.0], atol=1e-5)


def one_window(n: int = 1000, a: int = 400, b: int = 409):  # type: ignore[no-untyped-def]
    return layout(n, [(a, b)])


def detections(n: int, *at: int) -> np.ndarray:
    s = np.zeros(n)
    s[list(at)] = 1.0
    return s


def test_first_detection_in_window_counts_and_later_ones_are_free() -> None:
    lay = one_window()
    early = score_file(lay, detections(1000, 400), 0.5, STANDARD)
    assert early.score == pytest.approx(1.0)  # left edge: the full reward
    later = score_file(lay, detections(1000, 405, 407, 409), 0.5, STANDARD)
    assert later.score == pytest.approx(sig(-(409 - 405 + 1) / 10) / sig(-1))
    assert later.tp == 3 and later.windows_detected == 1


def test_missed_window_and_false_positives() -> None:
    lay = one_window()
    assert score_file(lay, np.zeros(1000), 0.5, STANDARD).score == -1.0
    before = score_file(lay, detections(1000, 300), 0.5, STANDARD)
    assert before.score == pytest.approx(-1.0 - 0.11)  # no window before it: the full fp weight
    after = score_file(lay, detections(1000, 412), 0.5, STANDARD)
    assert after.score == pytest.approx(-1.0 + 0.11 * sig((412 - 409) / 9))  # milder just after a window
    far = score_file(lay, detections(1000, 900), 0.5, STANDARD)
    assert far.score == pytest.approx(-1.0 - 0.11)


def test_probationary_records_are_not_scored() -> None:
    lay = layout(1000, [(100, 109), (400, 409)])  # the first window lies in the probation (150)
    result = score_file(lay, detections(1000, 10, 100), 0.5, STANDARD)
    assert result.score == -1.0  # only the second window counts, and it was missed
    assert null_score([lay], STANDARD) == -1.0
    assert perfect_score([lay], STANDARD) == 2.0  # NAB's perfect counts every labelled window


def test_threshold_is_inclusive() -> None:
    lay = one_window()
    s = np.zeros(1000)
    s[400] = 0.7
    assert score_file(lay, s, 0.7, STANDARD).windows_detected == 1
    assert score_file(lay, s, 0.70001, STANDARD).windows_detected == 0


def test_sweep_picks_the_best_threshold_and_ties_go_high() -> None:
    lay = one_window()
    s = np.zeros(1000)
    s[400] = 0.9  # the window's left edge
    s[700] = 0.8  # a false positive between the two
    s[405] = 0.6
    swept = sweep([lay], [s], STANDARD)
    assert swept.thresholds[0] == math.inf and swept.raw[0] == -1.0
    assert swept.best() == (0.9, pytest.approx(1.0))
    assert swept.at(0.85) == pytest.approx(1.0)
    assert swept.at(0.8) == pytest.approx(1.0 + 0.11 * sig((700 - 409) / 9))
    # With the false positive gone, every threshold down to 0.6 scores 1.0: the highest is kept.
    s[700] = 0.0
    assert sweep([lay], [s], STANDARD).best()[0] == 0.9


def test_sweep_equals_per_file_scoring_on_random_scores() -> None:
    rng = np.random.default_rng(3)
    lays = [layout(2000, [(500, 560), (1500, 1560)]), layout(1500, []), layout(800, [(300, 320)])]
    scores = [np.round(rng.random(lay.n) ** 8, 3) for lay in lays]  # many ties
    for profile in PROFILES:
        swept = sweep(lays, scores, profile)
        for t in [*swept.thresholds[1:40], 0.0005, 0.5]:
            direct = sum(score_file(lay, s, float(t), profile).score for lay, s in zip(lays, scores, strict=True))
            assert swept.at(float(t)) == pytest.approx(direct, abs=1e-9)


def test_normalisation() -> None:
    assert normalise(-116.0, -116.0, 116.0) == 0.0
    assert normalise(116.0, -116.0, 116.0) == 100.0
    assert normalise(46.6344501971, -116.0, 116.0) == pytest.approx(70.101056, abs=1e-6)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="overlap"):
        layout(100, [(10, 20), (15, 30)])
    with pytest.raises(ValueError, match="outside"):
        layout(100, [(90, 120)])
    with pytest.raises(ValueError, match="finite"):
        sweep([layout(10, [])], [np.full(10, np.nan)], STANDARD)
    with pytest.raises(ValueError, match="expected 10 scores"):
        sweep([layout(10, [])], [np.zeros(9)], STANDARD)
