"""Seasonal baseline per feature: STL's seasonal profile and a streaming level, robust residual scale.

Rows are regular samples of one entity (one row per interval; NaN where a feature is missing), so
a feature's phase is the row count modulo its period. The STL fit (statsmodels, robust, with
R's interpolation ``jump``s so it costs tens of milliseconds, not seconds) runs off the hot path:
every ``refit_every`` learned rows on a ring of the last ``buffer`` rows, or when the service calls
``refit()`` (or ``prepare_fit`` in a worker thread, then ``apply_fit``) with ``refit_every=0``.
Between fits a row is scored against ``profile[phase] + level`` in units of the robust scale of
STL's residuals; the level follows the deseasonalised values with an EWMA, which does not learn
from rows beyond ``skip_above`` sigmas, so an anomaly does not drag the baseline with it.

The period is configured or detected per feature: a candidate whose autocorrelation is high
(``min_acf``) and a peak (higher than at half the lag by ``min_acf``), which rejects trends and
random walks (high ACF everywhere) and even multiples of the true period (high ACF at their half
too); of those, the shortest that peaks nearly as high as the best (odd multiples peak as high).
A feature without a period is scored against its level and the MAD of the buffer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from statsmodels.tsa.seasonal import STL
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.ring import RowRing, as_rows, pack, unpack

IntArray = npt.NDArray[np.int64]
MAD_TO_SIGMA = 1.4826
CANDIDATES = (24, 60, 144, 168, 288, 1440)  # hourly/daily/weekly at 1-min, 5-min, 10-min and hourly steps


def autocorrelation(x: FloatArray, max_lag: int) -> FloatArray:
    """Unbiased sample ACF for lags 0..max_lag (FFT, so all lags cost one transform)."""
    y = x - x.mean()
    n = len(y)
    spec = np.fft.rfft(y, 2 * n)
    cov = np.fft.irfft(spec * np.conj(spec))[: max_lag + 1] / (n - np.arange(max_lag + 1))
    return np.asarray(cov / cov[0], dtype=np.float64) if cov[0] > 0 else np.zeros(max_lag + 1)


def detect_period(x: FloatArray, candidates: Sequence[int], min_acf: float = 0.3) -> int:
    """The best seasonal candidate with at least two cycles in ``x``, or 0 when none is convincing."""
    fits = [p for p in candidates if p >= 2 and 2 * p <= len(x)]
    if not fits:
        return 0
    t = np.arange(len(x))
    detrended = x - np.polyval(np.polyfit(t, x, 1), t)
    acf = autocorrelation(detrended, max(fits))
    peaks = {p: acf[p] - acf[p // 2] for p in fits if acf[p] >= min_acf and acf[p] - acf[p // 2] >= min_acf}
    if not peaks:
        return 0
    best = max(peaks.values())
    return min(p for p, peak in peaks.items() if peak >= 0.8 * best)  # 3 x the period peaks as high


def fill_gaps(x: FloatArray) -> FloatArray | None:
    """Linear interpolation over NaNs; None when fewer than half the values are present."""
    ok = np.isfinite(x)
    if ok.sum() < max(2, len(x) // 2):
        return None
    idx = np.arange(len(x))
    return np.asarray(np.interp(idx, idx[ok], x[ok]), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class SeasonalFit:
    periods: IntArray  # per feature; 1 = no season (a one-phase profile of 0)
    profiles: FloatArray  # (features, longest period), seasonal value per phase = count % period
    level: FloatArray  # per feature, after the last buffered row; NaN = not fitted
    scale: FloatArray
    at: int  # ring count at the fit


class SeasonalDetector(Detector):
    name = "seasonal"

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        period: int | None = None,
        candidates: Sequence[int] = CANDIDATES,
        buffer: int = 3072,
        refit_every: int = 512,
        min_fit: int = 128,
        alpha: float = 0.05,
        skip_above: float | None = 6.0,
        robust: bool = True,
        min_acf: float = 0.3,
        rel_floor: float = 1e-3,
        abs_floor: float = 1e-6,
    ) -> None:
        super().__init__(features)
        if period is not None and (period < 2 or 2 * period > buffer):
            raise ValueError(f"period must be >= 2 and fit twice in the buffer ({buffer}), got {period}")
        if not 0 < alpha < 1 or refit_every < 0 or min_fit < 4:
            raise ValueError("alpha must be in (0, 1), refit_every >= 0 (0: only refit()), min_fit >= 4")
        self.period, self.candidates = period, tuple(candidates)
        self.refit_every, self.min_fit = refit_every, max(min_fit, 2 * period if period else 0)
        self.alpha, self.skip_above, self.robust, self.min_acf = alpha, skip_above, robust, min_acf
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        self.ring = RowRing(buffer, len(self.features))
        self.fit: SeasonalFit | None = None
        self.level = np.zeros(0)

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        return {"period": 12, "buffer": 96, "refit_every": 32, "min_fit": 24}

    def _grow(self, n_features: int) -> None:
        self.ring.grow(n_features)

    # -- fitting (off the hot path)
    def prepare_fit(self, rows: FloatArray | None = None, at: int | None = None) -> SeasonalFit:
        """STL per feature on ``rows`` (default: the whole buffer); touches no model state."""
        X = self.ring.rows() if rows is None else rows
        at = self.ring.count if at is None else at
        d = X.shape[1]
        periods, level, scale = np.ones(d, dtype=np.int64), np.full(d, np.nan), np.full(d, np.nan)
        seasonals: list[FloatArray] = [np.zeros(1)] * d
        for j in range(d):
            x = fill_gaps(X[:, j])
            if x is not None:
                periods[j], seasonals[j], level[j], scale[j] = self._fit_one(x, at)
        profiles = np.zeros((d, int(periods.max(initial=1))))
        for j, s in enumerate(seasonals):
            profiles[j, : len(s)] = s
        floor = np.maximum(self.rel_floor * np.abs(np.nan_to_num(level)), self.abs_floor)
        return SeasonalFit(periods, profiles, level, np.maximum(scale, floor), at)

    def _fit_one(self, x: FloatArray, at: int) -> tuple[int, FloatArray, float, float]:
        """(period, profile by phase, level after the last row, residual sigma) of one feature."""
        p = self.period or detect_period(x, self.candidates, self.min_acf)
        if p < 2 or 2 * p > len(x):
            recent = float(np.median(x[-min(len(x), 64) :]))
            return 1, np.zeros(1), recent, float(np.median(np.abs(x - np.median(x)))) * MAD_TO_SIGMA
        jump = max(1, math.ceil(0.15 * p))  # about a tenth of STL's trend window, as R's stl does
        res = STL(x, period=p, robust=self.robust, trend_jump=jump, low_pass_jump=jump).fit()
        seasonal = np.asarray(res.seasonal, dtype=np.float64)
        phases = (at - len(x) + np.arange(len(x) - p, len(x))) % p  # the last full cycle, phase by phase
        profile = np.empty(p)
        profile[phases] = seasonal[-p:]
        # The scale comes from what scoring will see (every cycle against the final profile), not from
        # STL's in-sample residual, which its seasonal smoother has already pulled towards zero.
        trend = np.asarray(res.trend, dtype=np.float64)
        resid = x - trend - profile[(at - len(x) + np.arange(len(x))) % p]
        sigma = float(np.median(np.abs(resid - np.median(resid)))) * MAD_TO_SIGMA
        return p, profile, float(trend[-1]), sigma

    def apply_fit(self, fit: SeasonalFit) -> None:
        """Adopt a fit and replay the rows learned since it was prepared through the level EWMA."""
        self.fit = fit
        self.level = fit.level.copy()
        since = self.ring.count - fit.at
        if since > 0:
            self._follow_level(fit, self.ring.rows(since), fit.at, None)

    def refit(self) -> None:
        if self.ring.size >= 4:
            self.apply_fit(self.prepare_fit())

    def due(self) -> bool:
        if self.fit is None:
            return self.ring.size >= self.min_fit
        return self.refit_every > 0 and self.ring.count - self.fit.at >= self.refit_every

    # -- scoring and learning
    def _z(self, fit: SeasonalFit, X: FloatArray, start: int) -> FloatArray:
        """Signed robust z of each row as the sample at count ``start`` (NaN where unknown)."""
        d = len(fit.periods)
        X = X[:, :d]
        phases = np.broadcast_to(start % fit.periods[: X.shape[1]], X.shape)
        seasonal = fit.profiles[np.arange(X.shape[1]), phases]
        with np.errstate(invalid="ignore"):
            return np.asarray((X - seasonal - self.level[: X.shape[1]]) / fit.scale[: X.shape[1]], dtype=np.float64)

    def score_many(self, X: FloatArray) -> FloatArray:
        """Each row as the next sample (the current phase and level); ``process_many`` chains them."""
        X = as_rows(X, len(self.features))
        if self.fit is None or len(X) == 0:
            return np.zeros(len(X))
        z = np.abs(self._z(self.fit, X, self.ring.count))
        return np.asarray(np.where(np.isfinite(z), z, 0.0).max(axis=1, initial=0.0), dtype=np.float64)

    def _run(self, X: FloatArray, scores: FloatArray | None) -> None:
        """Learn rows in order (scoring each first into ``scores``), one segment between refits at a time."""
        i = 0
        while i < len(X):
            take = len(X) - i
            if self.fit is None:
                take = min(take, max(1, self.min_fit - self.ring.size))
            elif self.refit_every > 0:
                take = min(take, max(1, self.refit_every - (self.ring.count - self.fit.at)))
            seg = X[i : i + take]
            if self.fit is None:
                if scores is not None:
                    scores[i : i + take] = 0.0
            else:
                self._follow_level(self.fit, seg, self.ring.count, None if scores is None else scores[i : i + take])
            self.ring.push(seg)
            i += take
            if self.due():
                self.refit()

    def _follow_level(self, fit: SeasonalFit, X: FloatArray, start: int, scores: FloatArray | None) -> None:
        """The level EWMA over rows at sample counts start, start+1, ...: one small vector step per row."""
        d = len(fit.periods)
        counts = start + np.arange(len(X))[:, None]
        deseason = X[:, :d] - fit.profiles[np.arange(d), counts % fit.periods]
        level, scale, alpha = self.level, fit.scale, self.alpha
        skip = np.inf if self.skip_above is None else self.skip_above
        for i, row in enumerate(deseason):
            z = np.abs(row - level) / scale
            finite = np.isfinite(z)
            if scores is not None:
                scores[i] = z[finite].max(initial=0.0)
            level = np.where(finite & (z <= skip), level + alpha * (row - level), level)
        self.level = level

    def learn_many(self, X: FloatArray) -> None:
        self._run(as_rows(X, len(self.features)), None)

    def process_many(self, X: FloatArray) -> FloatArray:
        X = as_rows(X, len(self.features))
        out = np.zeros(len(X))
        self._run(X, out)
        return out

    # -- state
    def state(self) -> dict[str, Any]:
        fit = self.fit
        blob: dict[str, Any] = {"ring": self.ring.dump(), "level": pack(self.level), "fit": None}
        if fit is not None:
            blob["fit"] = {
                "periods": fit.periods.tolist(),
                "profiles": pack(fit.profiles),
                "level": pack(fit.level),
                "scale": pack(fit.scale),
                "at": fit.at,
            }
        return blob

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.ring = RowRing.load(state["ring"], len(self.features))
        self.level = unpack(state["level"])
        raw = state.get("fit")
        self.fit = None
        if raw is not None:
            periods = np.asarray(raw["periods"], dtype=np.int64)
            profiles, level, scale = unpack(raw["profiles"]), unpack(raw["level"]), unpack(raw["scale"])
            self.fit = SeasonalFit(periods, profiles, level, scale, int(raw["at"]))
