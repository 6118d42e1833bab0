"""Threshold calibration: GPD tails with known quantiles, conformal coverage, episodes and pages by hand,
alarm budgets, and streaming SPOT/DSPOT."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import genpareto
from vigil.analytics.models import calibrate


def test_exponential_tail_gives_the_known_extreme_quantile() -> None:
    # Exp(1): P(X > x) = exp(-x), so the score exceeded with probability 1e-5 is ln(1e5) = 11.51; 20,000 samples
    # hold that far only by extrapolation (their maximum is about ln(20000) = 9.9)
    scores = np.random.default_rng(1).exponential(1.0, 20_000)
    tail = calibrate.fit_tail(scores)
    assert scores.max() < 11.0
    assert tail.quantile(1e-5) == pytest.approx(math.log(1e5), rel=0.08)
    assert tail.quantile(1e-3) == pytest.approx(math.log(1e3), rel=0.05)
    assert abs(tail.shape) < 0.1  # an exponential tail is a GPD with shape 0


@pytest.mark.parametrize("shape", [-0.3, 0.25])
def test_gpd_tail_recovers_shape_and_quantile(shape: float) -> None:
    # above its 98% quantile, a GPD sample is again a GPD with the same shape: its quantile at risk q is
    # (q^-shape - 1) / shape (scale 1, location 0)
    scores = genpareto.rvs(shape, scale=1.0, size=100_000, random_state=7)
    tail = calibrate.fit_tail(scores)
    assert tail.shape == pytest.approx(shape, abs=0.08)
    for risk in (1e-3, 1e-4):
        assert tail.quantile(risk) == pytest.approx((risk**-shape - 1) / shape, rel=0.1)


def test_grimshaw_fit_is_the_maximum_likelihood() -> None:
    excesses = genpareto.rvs(0.2, scale=2.0, size=400, random_state=3)
    shape, scale = calibrate._gpd(excesses)
    ours = genpareto.logpdf(excesses, shape, scale=scale).sum()
    s_shape, _, s_scale = genpareto.fit(excesses, floc=0.0)  # scipy's generic (Nelder-Mead) fit
    assert ours >= genpareto.logpdf(excesses, s_shape, scale=s_scale).sum() - 1e-6
    assert shape == pytest.approx(s_shape, abs=1e-3) and scale == pytest.approx(s_scale, rel=1e-3)


def test_few_or_equal_peaks_fall_back_to_an_exponential_tail() -> None:
    assert calibrate._gpd(np.array([1.0, 2.0, 3.0])) == (0.0, 2.0)  # fewer than MIN_PEAKS: mean excess
    assert calibrate._gpd(np.full(50, 0.5)) == (0.0, 0.5)  # no spread to fit
    tail = calibrate.fit_tail(np.zeros(1000))  # a constant score: nothing above the level
    assert tail.peaks == 0 and tail.quantile(1e-3) == 0.0


def test_tail_calibrator_is_empirical_below_the_level_and_gpd_above() -> None:
    calibration = np.arange(1.0, 100.0)  # 99 scores 1..99; the level (98% quantile) is 97.04
    tail = calibrate.TailCalibrator(calibration)
    # 50 is matched or exceeded by 50 of 99 scores: (1 + 50) / (99 + 1)
    assert tail.probability(np.array([50.0]))[0] == pytest.approx(0.51)
    beyond = tail.probability(np.array([98.0, 99.0, 150.0]))
    assert (np.diff(beyond) <= 0).all() and beyond[-1] < 1 / 100  # keeps falling past the largest score
    surprise = tail.surprise(np.array([10.0, 50.0, 99.0, 150.0]))
    assert (np.diff(surprise) > 0).all()


def test_conformal_threshold_is_the_finite_sample_order_statistic() -> None:
    # 99 scores 1..99, alpha 0.1: the ceil(100 * 0.9) = 90th smallest
    assert calibrate.conformal_threshold(np.arange(1.0, 100.0), 0.1) == 90.0
    assert calibrate.conformal_threshold(np.arange(1.0, 10.0), 0.01) == 9.0  # too few scores: the largest
    rng = np.random.default_rng(0)
    exceeded = [rng.normal(size=1) > calibrate.conformal_threshold(rng.normal(size=199), 0.05) for _ in range(4000)]
    assert np.mean(exceeded) <= 0.05 + 0.01  # exchangeable data: a new score exceeds it at most alpha of the time


def test_episodes_merge_alarms_within_the_gap() -> None:
    alarms = np.zeros(20, dtype=bool)
    alarms[[1, 2, 4, 9, 10, 15]] = True
    # gap 2: 1,2,4 (4 - 2 = 2) are one episode; 9,10 one; 15 one
    assert calibrate.episodes(alarms, 2).tolist() == [[1, 5], [9, 11], [15, 16]]
    assert calibrate.episodes(alarms, 1).tolist() == [[1, 3], [4, 5], [9, 11], [15, 16]]  # plain runs
    assert calibrate.episodes(np.zeros(5, dtype=bool), 3).shape == (0, 2)


def test_pages_repeat_while_an_episode_stays_open() -> None:
    alarms = np.zeros(30, dtype=bool)
    alarms[0:10] = True  # one episode 10 samples long: pages at 0, 4 and 8 with repeat 4
    alarms[20] = True
    assert calibrate.pages(alarms, merge=1, repeat=4) == 3 + 1
    assert calibrate.pages(alarms, merge=1, repeat=100) == 2


def test_budget_threshold_keeps_the_allowed_number_of_pages() -> None:
    # ten days of hourly scores at 0 with 20 isolated spikes of heights 1..20: one page a day allows 10 spikes,
    # so the threshold sits at or above the 11th highest spike (10) and below the 10th (11)
    calibration = np.zeros(240)
    calibration[np.arange(20) * 12 + 5] = np.arange(1.0, 21.0)
    threshold = calibrate.budget_threshold(calibration, allowed=10, merge=1, repeat=4)
    assert 10.0 <= threshold < 11.0
    assert calibrate.pages(calibration > threshold, 1, 4) == 10


def test_streaming_spot_alarms_at_about_its_risk_and_is_causal() -> None:
    rng = np.random.default_rng(2)
    calibration, stream = rng.exponential(1.0, 20_000), rng.exponential(1.0, 100_000)
    alarms, thresholds = calibrate.Spot(calibration, risk=1e-3).run(stream)
    assert 40 <= alarms.sum() <= 250  # about 100 expected
    changed = stream.copy()
    changed[60_000:] += 50.0  # what comes later cannot move an earlier threshold
    _, again = calibrate.Spot(calibration, risk=1e-3).run(changed)
    np.testing.assert_array_equal(again[:60_001], thresholds[:60_001])


def test_dspot_follows_a_drifting_level_that_spot_alarms_on() -> None:
    rng = np.random.default_rng(4)
    calibration = rng.exponential(1.0, 5_000)
    drift = rng.exponential(1.0, 20_000) + np.linspace(0.0, 10.0, 20_000)  # the level climbs 10 scales
    spot_alarms, _ = calibrate.Spot(calibration, risk=1e-3).run(drift)
    dspot_alarms, _ = calibrate.Spot(calibration, risk=1e-3, depth=10).run(drift)
    assert spot_alarms[-5_000:].mean() > 0.3  # the tail of the raw scores alarms on much of the end
    assert dspot_alarms.mean() < 0.02  # the drift-corrected one does not


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="risk"):
        calibrate.fit_tail(np.arange(100.0)).quantile(0.0)
    with pytest.raises(ValueError, match="gap"):
        calibrate.episodes(np.ones(3, dtype=bool), 0)
    with pytest.raises(ValueError, match="no finite"):
        calibrate.fit_tail(np.array([np.nan]))
