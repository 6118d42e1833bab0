"""Time-to-threshold forecasts: when will this filesystem be full, this GPU hit its slowdown temperature?

Holt's linear exponential smoothing (statsmodels) on a bounded, evenly resampled history gives a
level and a trend; the forecast crosses the threshold ``(threshold - level) / trend`` seconds ahead
when the trend points at it. The fit costs milliseconds, so the predictor stage runs it once per
entity per minute or so, never per sample.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Forecast:
    seconds: float  # until the threshold is reached; math.inf when the trend does not lead there
    level: float
    trend_per_s: float
    threshold: float
    points: int

    @property
    def reached(self) -> bool:
        return math.isfinite(self.seconds)


def resample(ts: FloatArray, values: FloatArray, step: float) -> FloatArray:
    """Evenly spaced values (linear interpolation) over the span of ``ts``, one per ``step`` seconds."""
    grid = np.arange(ts[0], ts[-1] + step / 2, step)
    return np.interp(grid, ts, values)


def time_to_threshold(
    ts: FloatArray,
    values: FloatArray,
    threshold: float,
    *,
    direction: Literal["up", "down"] = "up",
    step: float = 60.0,
    max_horizon: float = 30 * 86400.0,
    min_points: int = 10,
) -> Forecast | None:
    """Seconds until ``values`` reach ``threshold`` going ``direction``; None with too little history."""
    ok = np.isfinite(ts) & np.isfinite(values)
    ts, values = ts[ok], values[ok]
    if len(ts) < 2 or ts[-1] - ts[0] < step * (min_points - 1):
        return None
    y = resample(ts, values, step)
    from statsmodels.tsa.holtwinters import Holt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on flat series; the fit is still usable
        fit = Holt(y, initialization_method="estimated").fit()
    level = float(fit.level[-1])
    trend = float(fit.trend[-1]) / step
    gap = threshold - level
    toward = trend > 0 if direction == "up" else trend < 0
    crossed = gap <= 0 if direction == "up" else gap >= 0
    if crossed:
        seconds = 0.0
    elif toward and trend != 0:
        seconds = gap / trend
    else:
        seconds = math.inf
    if seconds > max_horizon:
        seconds = math.inf
    return Forecast(seconds, level, trend, threshold, len(y))
