"""Forecast residual: each row predicted from the rows before it by a vector autoregression (VAR).

Why: a server's metrics move together in time (traffic, then CPU, then latency), and an incident
often breaks that dynamic before any value leaves its normal range: a metric that freezes, jumps
against its own recent past, or stops following the others. A VAR(L) forecast
``x_t ≈ μ + Σ_l A_l (x_{t-l} - μ)`` learnt on normal data predicts each metric from the last
``lags`` rows of all metrics; the score is how far the row is from its forecast, per metric in
units of that metric's usual forecast error (capped at ``cap``, so one metric cannot swamp the
others), squared and averaged over the metrics: about 1 on a typical normal row.

It is fitted by Yule-Walker from streaming sufficient statistics: per lag ``l = 0..lags`` the sum
of ``(x_t - c)(x_{t-l} - c)'`` about a reference point ``c`` (each metric's first batch mean, so
round-off stays small on raw counters), the sums of both sides, the count and each metric's
range; the autocovariances about the overall mean follow exactly, whatever the reference point,
so a month learnt in pieces equals a batch fit (up to round-off), and the
state is ``(lags + 1) d²`` numbers (the full lagged scatter would be ``((lags + 1) d)²``); the
lag covariance is the block-Toeplitz matrix of those autocovariances. The regression is ridge
(``ridge`` times the identity, in range-scaled units, so a constant or collinear metric cannot
make it singular) and is solved lazily on the first score after learning.
Each metric's forecast error scale comes from the same statistics (the residual variance of the
fit), floored at ``SCALE_FLOOR`` of the metric's range so a metric that never moved in training
is not a thousand-sigma event at its first twitch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.mspc import listed, unlisted
from vigil.analytics.models.ring import pack, unpack

RIDGE = 1e-3  # in range-scaled units: small against a metric's variance, large against round-off
CAP = 10.0  # a metric's forecast error counts at most 10 of its usual errors
SCALE_FLOOR = 1e-3  # of the metric's range: the smallest forecast error that counts as one unit


class VARResidual(Detector):
    name = "var_residual"
    version = 1
    block = 32  # one solve per 32 rows in process_many

    def __init__(self, features: Sequence[str] = (), lags: int = 2, ridge: float = RIDGE, cap: float = CAP) -> None:
        if lags < 1:
            raise ValueError(f"lags must be >= 1 (a forecast needs a past), got {lags}")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if not cap > 0:
            raise ValueError(f"cap must be > 0, got {cap}")
        super().__init__(features)
        self.lags, self.ridge, self.cap = int(lags), float(ridge), float(cap)
        d = len(self.features)
        self.n = 0  # rows learnt
        self.pairs = np.zeros(lags + 1)  # (row, row l before) pairs learnt, per lag l
        self.center = np.full(d, np.nan)  # each metric's reference point (its first batch mean); NaN: never seen
        self.sums = np.zeros(d)  # sum of (x_t - center)
        self.products = np.zeros((lags + 1, d, d))  # per lag l: sum of (x_t - center)(x_{t-l} - center)'
        self.sides = np.zeros((2, lags + 1, d))  # per lag l: the sums of x_t - center and of x_{t-l} - center
        self.low = np.full(d, np.nan)
        self.high = np.full(d, np.nan)
        self.recent = np.zeros((lags, d))  # the last rows learnt (deviations, missing values imputed), oldest first
        self.filled = 0  # how many of them exist yet
        self._forecast: _Forecast | None = None

    def _grow(self, n_features: int) -> None:
        extra = n_features - len(self.center)
        for attr in ("center", "low", "high"):
            setattr(self, attr, np.concatenate((getattr(self, attr), np.full(extra, np.nan))))
        self.sums = np.concatenate((self.sums, np.zeros(extra)))
        self.products = np.pad(self.products, ((0, 0), (0, extra), (0, extra)))
        self.sides = np.pad(self.sides, ((0, 0), (0, 0), (0, extra)))
        self.recent = np.pad(self.recent, ((0, 0), (0, extra)))  # a new metric sat at its mean before
        self._forecast = None

    def _rows(self, X: FloatArray) -> FloatArray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] > len(self.features):
            raise ValueError(f"expected rows of at most {len(self.features)} features, got shape {X.shape}")
        if X.shape[1] < len(self.features):  # rows built before a feature appeared: it is missing there
            X = np.pad(X, ((0, 0), (0, len(self.features) - X.shape[1])), constant_values=np.nan)
        return X

    def _deviations(self, X: FloatArray) -> FloatArray:
        """Rows as deviations from the reference points, a missing value at the learnt mean (0 if never seen)."""
        mean = self.sums / max(self.n, 1)
        dev = X - self.center
        return np.where(np.isfinite(dev), dev, np.where(np.isnan(self.center), 0.0, mean))

    def learn_many(self, X: FloatArray) -> None:
        X = self._rows(X)
        if len(X) == 0:
            return
        finite = np.isfinite(X)
        counts = finite.sum(axis=0)
        totals = np.where(finite, X, 0.0).sum(axis=0)
        batch = np.divide(totals, counts, out=np.full(X.shape[1], np.nan), where=counts > 0)
        fresh = np.isnan(self.center) & (counts > 0)
        self.center[fresh] = batch[fresh]  # raw sums about a nearby point keep the round-off small
        dev = self._deviations(X)
        history = np.concatenate((self.recent, dev))
        for lag in range(self.lags + 1):
            first = max(0, lag - self.filled)  # the first rows have no row ``lag`` before them yet
            past = history[self.lags - lag + first : self.lags - lag + len(dev)]
            self.products[lag] += dev[first:].T @ past
            self.sides[0, lag] += dev[first:].sum(axis=0)
            self.sides[1, lag] += past.sum(axis=0)
            self.pairs[lag] += len(dev) - first
        self.sums += dev.sum(axis=0)
        self.n += len(dev)
        self.recent = history[-self.lags :]
        self.filled = min(self.lags, self.filled + len(dev))
        self.low = np.fmin(self.low, np.where(finite, X, np.inf).min(axis=0))
        self.high = np.fmax(self.high, np.where(finite, X, -np.inf).max(axis=0))
        self.low[np.isinf(self.low)] = np.nan  # no value seen yet
        self.high[np.isinf(self.high)] = np.nan
        self._forecast = None

    def _errors(self, X: FloatArray) -> FloatArray:
        """Each row's forecast error per metric, in units of that metric's usual error, capped."""
        X = self._rows(X)
        if self.n < 2 or not len(self.features):
            return np.zeros((len(X), len(self.features)))
        if self._forecast is None:
            self._forecast = _Forecast.fit(self)
        history = np.concatenate((self.recent, self._deviations(X)))
        missing = np.concatenate((np.zeros(self.recent.shape, dtype=bool), ~np.isfinite(X)))
        missing[: self.lags - self.filled] = True  # rows that do not exist yet sit at the mean
        return self._forecast.errors(history, missing, self.lags, self.cap)

    def score_many(self, X: FloatArray) -> FloatArray:
        """Rows are taken as consecutive, following the last row learnt (their lags come from there)."""
        errors = self._errors(X)
        if errors.shape[1] == 0:
            return np.zeros(len(errors))
        scores: FloatArray = (errors**2).mean(axis=1)
        return scores

    def explain_many(self, X: FloatArray) -> FloatArray:
        errors = self._errors(X)
        total = (errors**2).sum(axis=1, keepdims=True)
        shares: FloatArray = np.divide(errors**2, total, out=np.full(errors.shape, np.nan), where=total > 0)
        return shares

    def process_many(self, X: FloatArray) -> FloatArray:
        """Causal in blocks of :attr:`block` rows: each block is scored with the state learnt before it, then learnt."""
        out = np.empty(len(X))
        for start in range(0, len(X), self.block):
            rows = X[start : start + self.block]
            out[start : start + len(rows)] = self.score_many(rows)
            self.learn_many(rows)
        return out

    def state(self) -> dict[str, Any]:
        upper = np.triu_indices(len(self.features))
        return {
            "lags": self.lags,
            "ridge": self.ridge,
            "cap": self.cap,
            "n": self.n,
            "pairs": self.pairs.tolist(),
            "center": listed(self.center),
            "sums": pack(self.sums),
            "lag0": pack(self.products[0][upper]),  # symmetric: its upper triangle
            "lagged": pack(self.products[1:]),
            "sides": pack(self.sides),
            "low": listed(self.low),
            "high": listed(self.high),
            "recent": pack(self.recent),
            "filled": self.filled,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        d = len(self.features)
        self.lags, self.ridge, self.cap = int(state["lags"]), float(state["ridge"]), float(state["cap"])
        self.n, self.filled = int(state["n"]), int(state["filled"])
        self.pairs = np.asarray(state["pairs"], dtype=np.float64).reshape(self.lags + 1)
        self.center, self.low, self.high = (unlisted(state[k]).reshape(d) for k in ("center", "low", "high"))
        self.sums = unpack(state["sums"]).reshape(d)
        self.products = np.zeros((self.lags + 1, d, d))
        upper = np.triu_indices(d)
        self.products[0][upper] = unpack(state["lag0"])
        self.products[0] = np.triu(self.products[0]) + np.triu(self.products[0], 1).T
        self.products[1:] = unpack(state["lagged"]).reshape(self.lags, d, d)
        self.sides = unpack(state["sides"]).reshape(2, self.lags + 1, d)
        self.recent = unpack(state["recent"]).reshape(self.lags, d)
        self._forecast = None


def _autocovariance(det: VARResidual, lag: int, mean: FloatArray) -> FloatArray:
    """Cov(x_t, x_{t-lag}) about the overall mean: the same whatever reference point the sums were taken about."""
    pairs = det.pairs[lag]
    if pairs < 1:
        return np.zeros_like(det.products[lag])
    current, past = det.sides[0, lag], det.sides[1, lag]
    about_mean = det.products[lag] - np.outer(current, mean) - np.outer(mean, past) + pairs * np.outer(mean, mean)
    result: FloatArray = about_mean / pairs
    return result


class _Forecast:
    """The ridge VAR solved from a model's autocovariances (Yule-Walker), in range-scaled units."""

    def __init__(self, scale: FloatArray, mean: FloatArray, coef: FloatArray, error: FloatArray) -> None:
        self.scale, self.mean, self.coef, self.error = scale, mean, coef, error

    @classmethod
    def fit(cls, det: VARResidual) -> _Forecast:
        lags = det.lags
        mean = det.sums / det.n  # of the deviations from the reference points
        width = np.nan_to_num(det.high - det.low)
        level = np.abs(np.nan_to_num(det.center + mean))
        scale = np.where(width > 0, width, np.where(level > 0, level, 1.0))
        gamma = [_autocovariance(det, lag, mean) / np.outer(scale, scale) for lag in range(lags + 1)]
        c_xx = np.block([[gamma[j - i] if j >= i else gamma[i - j].T for j in range(lags)] for i in range(lags)])
        c_yx = np.hstack(gamma[1:])  # Cov(x_t, [x_{t-1}, ..., x_{t-lags}])
        coef = np.linalg.solve(c_xx + det.ridge * np.eye(len(c_xx)), c_yx.T)  # (lags * d, d)
        # residual variance per metric: diag(C_yy - 2 C_yx W + W' C_xx W)
        explained = 2 * np.einsum("ij,ji->i", c_yx, coef) - np.einsum("ji,jk,ki->i", coef, c_xx, coef)
        residual = np.diag(gamma[0]) - explained
        floor = SCALE_FLOOR * np.where(width > 0, 1.0, 0.0) + 1e-9  # a constant metric: any move is a full cap
        error = np.sqrt(np.maximum(residual, floor**2))
        return cls(scale, mean, coef, error)

    def errors(self, history: FloatArray, missing: npt.NDArray[np.bool_], lags: int, cap: float) -> FloatArray:
        """Errors of the rows after the first ``lags`` of ``history`` (deviations; ``missing`` ones at the mean)."""
        centred = np.where(missing, 0.0, (history - self.mean) / self.scale)
        n = len(history) - lags
        past = np.hstack([centred[lags - 1 - j : lags - 1 - j + n] for j in range(lags)])  # x_{t-1}, ..., x_{t-lags}
        out: FloatArray = np.clip((centred[lags:] - past @ self.coef) / self.error, -cap, cap)
        return out
