"""Seasonal baseline: period detection, phase-aware anomalies a flat baseline misses, refits off the hot path."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from vigil.analytics.models.seasonal import SeasonalDetector, autocorrelation, detect_period

CANDIDATES = (12, 24, 48, 60, 144)


def daily(rows: int, period: int = 48, seed: int = 0) -> np.ndarray:
    """A load curve: busy by day, quiet by night (not a sinusoid), plus noise."""
    rng = np.random.default_rng(seed)
    phase = (np.arange(rows) % period) / period
    busy = ((phase > 0.3) & (phase < 0.8)).astype(float)
    return np.asarray(20 + 30 * busy + 5 * np.sin(2 * np.pi * phase) + rng.normal(0, 1.0, rows))


def test_autocorrelation_matches_the_definition() -> None:
    x = np.random.default_rng(1).normal(size=200)
    acf = autocorrelation(x, 5)
    y = x - x.mean()
    direct = [np.dot(y[: len(y) - k], y[k:]) / (len(y) - k) / (np.dot(y, y) / len(y)) for k in range(6)]
    np.testing.assert_allclose(acf, direct, rtol=1e-9)


def test_period_is_found_and_trends_noise_and_multiples_are_rejected() -> None:
    rng = np.random.default_rng(0)
    assert detect_period(daily(600), CANDIDATES) == 48  # not 144 = 3 x 48, nor 24 (half)
    assert detect_period(10 + np.sin(2 * np.pi * np.arange(600) / 60) + rng.normal(0, 0.3, 600), CANDIDATES) == 60
    assert detect_period(rng.normal(size=600), CANDIDATES) == 0
    assert detect_period(np.cumsum(rng.normal(size=600)), CANDIDATES) == 0  # a random walk: high ACF, no peak
    assert detect_period(daily(60), CANDIDATES) == 0  # not two cycles of 48 yet, and 12/24 are no season


def test_a_value_normal_by_day_but_wrong_at_night_is_flagged_where_a_flat_baseline_sees_nothing() -> None:
    x = daily(1500)
    night = next(i for i in range(1300, 1400) if (i % 48) / 48 < 0.2)
    x[night] += 30  # daytime load in the middle of the night: within the series' overall range
    model = SeasonalDetector(["load"], candidates=CANDIDATES, buffer=600, refit_every=200)
    scores = model.process_many(x[:, None])
    assert model.fit is not None and model.fit.periods.tolist() == [48]
    normal = np.delete(scores[300:], night - 300)
    assert scores[night] > 10 and scores[night] > 2 * np.quantile(normal, 0.999)
    assert np.quantile(normal, 0.99) < 4.5
    flat = np.abs(x[night] - np.median(x[:night])) / (1.4826 * np.median(np.abs(x[:night] - np.median(x[:night]))))
    assert flat < 2  # what a non-seasonal robust z would say


def test_nothing_is_scored_before_the_first_fit_and_refit_every_zero_waits_for_refit() -> None:
    x = daily(400)[:, None]
    model = SeasonalDetector(["load"], period=48, buffer=400, refit_every=0, min_fit=50)
    assert model.process_many(x[:95]).max() == 0.0 and model.fit is None
    model.process_many(x[95:300])
    first = model.fit
    assert first is not None and first.at == 96  # the first fit once two periods were buffered
    model.process_many(x[300:])
    assert model.fit is first  # no refit on the hot path
    model.refit()
    assert model.fit is not first and model.fit.at == 400


def test_a_fit_prepared_in_a_worker_thread_equals_an_inline_refit() -> None:
    x = daily(700)[:, None]
    inline = SeasonalDetector(["load"], period=48, buffer=500, refit_every=0)
    threaded = SeasonalDetector(["load"], period=48, buffer=500, refit_every=0)
    for model in (inline, threaded):
        model.process_many(x[:400])
    rows, at = threaded.ring.rows(), threaded.ring.count
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(threaded.prepare_fit(rows, at)))
    worker.start()
    threaded.process_many(x[400:450])  # the hot path goes on while the worker fits
    worker.join()
    threaded.apply_fit(done[0])  # type: ignore[arg-type]
    inline.process_many(x[400:450])
    inline.apply_fit(inline.prepare_fit(rows, at))  # the same rows: the same fit, and both replay 50 rows
    np.testing.assert_allclose(threaded.level, inline.level)
    np.testing.assert_allclose(threaded.process_many(x[450:]), inline.process_many(x[450:]))


def test_a_lasting_level_shift_is_absorbed_at_the_next_refit() -> None:
    x = daily(1600)
    x[1000:] += 40  # e.g. a new tenant: far beyond skip_above, so the EWMA alone would never follow
    model = SeasonalDetector(["load"], period=48, buffer=480, refit_every=240)
    scores = model.process_many(x[:, None])
    assert scores[1000:1010].min() > 10
    assert np.quantile(scores[1500:], 0.99) < 5  # refits since the shift re-anchored the level


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="period"):
        SeasonalDetector(period=1000, buffer=512)
    with pytest.raises(ValueError, match="alpha"):
        SeasonalDetector(alpha=1.5)
