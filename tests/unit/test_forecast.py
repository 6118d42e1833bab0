from __future__ import annotations

import math

import numpy as np
import pytest
from vigil.analytics.models.predict.forecast import time_to_threshold


def test_filling_disk_reaches_full_when_the_line_says() -> None:
    ts = np.arange(0, 6 * 3600, 60.0)
    used = 100e9 + 1e6 * ts + np.random.default_rng(0).normal(0, 1e8, len(ts))  # +1 MB/s, 100 GB used
    fc = time_to_threshold(ts, used, 500e9, direction="up")
    assert fc is not None and fc.reached
    expected = (500e9 - (100e9 + 1e6 * ts[-1])) / 1e6
    assert fc.seconds == pytest.approx(expected, rel=0.05)
    assert fc.trend_per_s == pytest.approx(1e6, rel=0.05)


def test_flat_or_receding_series_never_reach() -> None:
    ts = np.arange(0, 3600, 60.0)
    flat = time_to_threshold(ts, np.full(len(ts), 60.0) + np.sin(ts), 87.0)
    cooling = time_to_threshold(ts, 80.0 - ts / 600, 87.0)
    assert flat is not None and not flat.reached
    assert cooling is not None and math.isinf(cooling.seconds)


def test_free_space_falling_to_zero_and_already_crossed() -> None:
    ts = np.arange(0, 3600, 60.0)
    free = 10e9 - 2e6 * ts
    fc = time_to_threshold(ts, free, 0.0, direction="down")
    assert fc is not None and fc.seconds == pytest.approx((10e9 - 2e6 * ts[-1]) / 2e6, rel=0.05)
    hot = time_to_threshold(ts, np.full(len(ts), 90.0), 87.0)
    assert hot is not None and hot.seconds == 0.0


def test_too_little_history_gives_no_forecast() -> None:
    assert time_to_threshold(np.array([0.0, 60.0]), np.array([1.0, 2.0]), 10.0) is None
