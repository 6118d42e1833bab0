"""Forecast residual: each row predicted from the rows before it by a vector autoregression (VAR).

Why: a server's metrics move together in time (traffic, then CPU, then latency), and an incident
often breaks that dynamic before any value leaves its normal range: a metric that freezes, jumps
against its own recent past, or stops following the others. A VAR(L) forecast
``x_t ≈ μ + Σ_l A_l (x_{t-l} - μ)`` learnt on normal data predicts each metric from the last
``lags`` rows of all metrics; the score is how far the row is from its forecast, per metric in
units of that metric's usual forecast error (capped at ``cap``, so one metric cannot swamp the
others), squared and averaged over the metrics: about 1 on a typical normal row.

It is fitted from the same streaming sufficient statistics as :class:`~.mspc.MSPCDetector` with
``lags`` (count, mean, scatter of ``[x_t, x_{t-1}, ..., x_{t-lags}]``, per-feature range), so
learning a month equals a batch fit and the state is small; the regression is ridge (``ridge``
times the identity added to the lag covariance, in range-scaled units, so a constant or
collinear metric cannot make it singular) and is solved lazily on the first score after learning.
Each metric's forecast error scale comes from the same statistics (the residual variance of the
fit), floored at ``SCALE_FLOOR`` of the metric's range so a metric that never moved in training
is not a thousand-sigma event at its first twitch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vigil.analytics.models.base import FloatArray
from vigil.analytics.models.mspc import MSPCDetector

RIDGE = 1e-3  # in range-scaled units: small against a metric's variance, large against round-off
CAP = 10.0  # a metric's forecast error counts at most 10 of its usual errors
SCALE_FLOOR = 1e-3  # of the metric's range: the smallest forecast error that counts as one unit


class VARResidual(MSPCDetector):
    name = "var_residual"
    version = 1

    def __init__(self, features: Sequence[str] = (), lags: int = 2, ridge: float = RIDGE, cap: float = CAP) -> None:
        if lags < 1:
            raise ValueError(f"lags must be >= 1 (a forecast needs a past), got {lags}")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if not cap > 0:
            raise ValueError(f"cap must be > 0, got {cap}")
        super().__init__(features, lags=lags)
        self.ridge, self.cap = float(ridge), float(cap)
        self._forecast: _Forecast | None = None

    def _accumulate(self, X: FloatArray) -> None:
        super()._accumulate(X)
        self._forecast = None

    def _grow(self, n_features: int) -> None:
        super()._grow(n_features)
        self._forecast = None

    def _errors(self, X: FloatArray) -> FloatArray:
        """Each row's forecast error per metric, in units of that metric's usual error, capped."""
        Z = self._lagged(np.asarray(X, dtype=np.float64))
        if self.n < 2:
            return np.zeros((len(Z), len(self.features)))
        if self._forecast is None:
            self._forecast = _Forecast.fit(self)
        return self._forecast.errors(Z, self.cap)

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

    def state(self) -> dict[str, Any]:
        return {**super().state(), "ridge": self.ridge, "cap": self.cap}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.ridge, self.cap = float(state["ridge"]), float(state["cap"])
        self._forecast = None


class _Forecast:
    """The ridge VAR solved from a model's lagged moments, in range-scaled units."""

    def __init__(self, offset: FloatArray, scale: FloatArray, mean: FloatArray, coef: FloatArray, error: FloatArray):
        self.offset, self.scale, self.mean, self.coef, self.error = offset, scale, mean, coef, error

    @classmethod
    def fit(cls, det: VARResidual) -> _Forecast:
        d = len(det.features)
        seen = np.isfinite(det.mean)
        offset = np.where(seen, np.nan_to_num(det.low), 0.0)
        width = np.nan_to_num(det.high - det.low)
        level = np.abs(np.nan_to_num(det.mean))
        scale = np.where(width > 0, width, np.where(level > 0, level, 1.0))
        mean = np.where(seen, (np.nan_to_num(det.mean) - offset) / scale, 0.0)
        cov = det.scatter / (det.n - 1) / np.outer(scale, scale)
        c_yy, c_yx, c_xx = cov[:d, :d], cov[:d, d:], cov[d:, d:]
        coef = np.linalg.solve(c_xx + det.ridge * np.eye(len(c_xx)), c_yx.T)  # (lag features, d)
        # residual variance per metric: diag(C_yy - 2 C_yx W + W' C_xx W)
        residual = np.diag(c_yy) - 2 * np.einsum("ij,ji->i", c_yx, coef) + np.einsum("ji,jk,ki->i", coef, c_xx, coef)
        floor = SCALE_FLOOR * np.where(width[:d] > 0, 1.0, 0.0) + 1e-9  # a constant metric: any move is a full cap
        error = np.sqrt(np.maximum(residual, floor**2))
        return cls(offset, scale, mean, coef, error)

    def errors(self, Z: FloatArray, cap: float) -> FloatArray:
        d = len(self.error)
        u = (Z - self.offset) / self.scale
        centred = np.where(np.isfinite(u), u - self.mean, 0.0)  # a missing value sits at the mean
        predicted = centred[:, d:] @ self.coef
        out: FloatArray = np.clip((centred[:, :d] - predicted) / self.error, -cap, cap)
        return out


MODELS = {VARResidual.name: VARResidual}
