"""Multivariate statistical process control: PCA's Hotelling T² and residual Q, learnt as a stream.

Classic MSPC (Jackson & Mudholkar 1979; Yue & Qin 2001's combined index) watches two things:
T², the Mahalanobis distance inside the principal subspace (many metrics moving together further
than ever, e.g. CPU, load and traffic all surging), and Q (SPE), the squared residual outside it
(the usual relations between metrics broken, e.g. one metric leaving the others behind). A plain
PCA reconstruction error sees only the second kind; a surge along the first principal direction
is reconstructed well and goes unnoticed.

The score is ``(T²/k + Q/E[Q]) / 2``: both terms are divided by their expected value on the
training data (k retained components; the sum of the discarded eigenvalues), so a typical normal
row scores about 1 and the score needs no quantile sketch to be comparable across hosts.

Everything is learnt from streaming sufficient statistics (count, mean, scatter matrix merged per
batch with Chan's formula, per-feature min and max), so ``learn_many`` on a month of data equals a
batch fit and the state is small (d² numbers). Each feature is scaled by its learnt range (the
features are counters, bytes, percentages: incomparable units); a feature constant so far is scaled
by its level (or 1 at zero), so any change in it counts as a full-range move. The eigenvectors are
recomputed lazily on the first score after learning.

``lags=L`` makes it dynamic PCA (Ku, Storer & Georgakis 1995): each row is joined with the L rows
before it, so a metric that jumps or freezes against its own recent past breaks a learnt relation
even when every value is in range. Rows are taken as consecutive in ``learn_many`` and
``score_many``; the last L rows learnt are the lags of the next ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vigil.analytics.models.base import Detector, FloatArray

VARIANCE_KEPT = 0.9  # the usual MSPC choice: the subspace holds 90% of the (range-scaled) variance
EIGEN_FLOOR = 1e-6  # relative to the total variance: keeps T² and Q/E[Q] finite on degenerate data


class MSPCDetector(Detector):
    name = "mspc"
    version = 1
    block = 32  # one eigen-solve per 32 rows in process_many

    def __init__(self, features: Sequence[str] = (), variance_kept: float = VARIANCE_KEPT, lags: int = 0) -> None:
        if not 0.0 < variance_kept < 1.0:
            raise ValueError(f"variance_kept must be in (0, 1), got {variance_kept}")
        if lags < 0:
            raise ValueError(f"lags must be >= 0, got {lags}")
        super().__init__(features)
        self.variance_kept = variance_kept
        self.lags = lags
        d = len(self.features)
        width = d * (lags + 1)  # statistics are over [x_t, x_t-1, ..., x_t-lags], newest block first
        self.n = 0
        self.mean = np.full(width, np.nan)  # NaN: feature never seen
        self.scatter = np.zeros((width, width))
        self.low = np.full(width, np.nan)
        self.high = np.full(width, np.nan)
        self.recent = np.full((lags, d), np.nan)  # the last rows learnt, oldest first: the next rows' lags
        self._model: _Subspace | None = None

    def _grow(self, n_features: int) -> None:
        old = self.recent.shape[1]
        blocks = np.arange(self.lags + 1)[:, None]
        moved = (blocks * n_features + np.arange(old)).ravel()  # where each old column lands
        width = n_features * (self.lags + 1)
        for attr in ("mean", "low", "high"):
            grown = np.full(width, np.nan)
            grown[moved] = getattr(self, attr)
            setattr(self, attr, grown)
        scatter = np.zeros((width, width))
        scatter[np.ix_(moved, moved)] = self.scatter
        self.scatter = scatter
        self.recent = np.pad(self.recent, ((0, 0), (0, n_features - old)), constant_values=np.nan)
        self._model = None

    def _lagged(self, X: FloatArray) -> FloatArray:
        """Rows (at most ``features`` wide, missing ones NaN) joined with the rows before them."""
        if X.ndim != 2 or X.shape[1] > len(self.features):
            raise ValueError(f"expected rows of at most {len(self.features)} features, got shape {X.shape}")
        if X.shape[1] < len(self.features):  # rows built before a feature appeared: it is missing there
            X = np.pad(X, ((0, 0), (0, len(self.features) - X.shape[1])), constant_values=np.nan)
        if not self.lags:
            return X
        rows = np.concatenate((self.recent, X))
        return np.hstack([rows[self.lags - lag : self.lags - lag + len(X)] for lag in range(self.lags + 1)])

    def learn_many(self, X: FloatArray) -> None:
        X = np.asarray(X, dtype=np.float64)
        Z = self._lagged(X)
        if len(X) == 0:
            return
        if self.lags:
            self.recent = np.concatenate((self.recent, Z[:, : self.recent.shape[1]]))[-self.lags :]
        self._accumulate(Z)

    def _accumulate(self, X: FloatArray) -> None:
        finite = np.isfinite(X)
        counts = finite.sum(axis=0)
        sums = np.where(finite, X, 0.0).sum(axis=0)
        batch_mean = np.divide(sums, counts, out=np.full(X.shape[1], np.nan), where=counts > 0)
        # a feature seen for the first time starts at this batch's mean: its unseen past adds no deviation
        fresh = np.isnan(self.mean) & np.isfinite(batch_mean)
        self.mean[fresh] = batch_mean[fresh]
        known = np.nan_to_num(self.mean)
        # missing values are imputed at the learnt mean, so they move neither the mean nor the scatter
        filled = np.where(finite, X, np.where(np.isfinite(batch_mean), batch_mean, known))
        b_mean = filled.mean(axis=0)
        centred = filled - b_mean
        b_n, total = len(filled), self.n + len(filled)
        delta = b_mean - known
        self.mean = np.where(np.isnan(self.mean), np.nan, known + delta * (b_n / total))
        self.scatter += centred.T @ centred + np.outer(delta, delta) * (self.n * b_n / total)
        self.n = total
        self.low = np.fmin(self.low, np.where(finite, X, np.inf).min(axis=0))
        self.high = np.fmax(self.high, np.where(finite, X, -np.inf).max(axis=0))
        self.low[np.isinf(self.low)] = np.nan  # no value seen yet
        self.high[np.isinf(self.high)] = np.nan
        self._model = None

    def score_many(self, X: FloatArray) -> FloatArray:
        """Rows are taken as consecutive, following the last row learnt (their lags come from there)."""
        Z = self._lagged(np.asarray(X, dtype=np.float64))
        if self.n < 2 or len(Z) == 0:
            return np.zeros(len(Z))
        if self._model is None:
            self._model = _Subspace.fit(self)
        return self._model.score(Z)

    def process_many(self, X: FloatArray) -> FloatArray:
        """Causal in blocks of :attr:`block` rows: each block is scored with the state learnt before
        it, then learnt (one eigen-solve per block, not per row)."""
        out = np.empty(len(X))
        for start in range(0, len(X), self.block):
            rows = X[start : start + self.block]
            out[start : start + len(rows)] = self.score_many(rows)
            self.learn_many(rows)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "variance_kept": self.variance_kept,
            "lags": self.lags,
            "recent": [listed(row) for row in self.recent],
            "n": self.n,
            "mean": listed(self.mean),
            "scatter": self.scatter.tolist(),
            "low": listed(self.low),
            "high": listed(self.high),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.variance_kept = float(state["variance_kept"])
        self.lags = int(state["lags"])
        self.recent = np.array([unlisted(row) for row in state["recent"]]).reshape(self.lags, len(self.features))
        self.n = int(state["n"])
        self.mean = unlisted(state["mean"])
        self.scatter = np.asarray(state["scatter"], dtype=np.float64).reshape(len(self.mean), len(self.mean))
        self.low = unlisted(state["low"])
        self.high = unlisted(state["high"])
        self._model = None


def listed(a: FloatArray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in a]


def unlisted(values: Sequence[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


class Principal:
    """A covariance's principal subspace and the combined index ``(T²/k + Q/E[Q]) / 2`` it gives.

    Shared by every PCA-based model: ``k`` is the fewest components holding ``variance_kept`` of
    the variance (at least 1, at most d - 1), E[Q] the sum of the discarded eigenvalues.
    """

    def __init__(self, basis: FloatArray, variances: FloatArray, expected_q: float) -> None:
        self.basis, self.variances, self.expected_q = basis, variances, expected_q

    @classmethod
    def fit(cls, cov: FloatArray, variance_kept: float) -> Principal:
        eigvals, eigvecs = np.linalg.eigh(cov)
        order = np.argsort(eigvals)[::-1]
        eigvals, eigvecs = np.clip(eigvals[order], 0.0, None), eigvecs[:, order]
        total = float(eigvals.sum())
        floor = max(EIGEN_FLOOR * total, 1e-12)
        d = len(eigvals)
        k = int(np.searchsorted(np.cumsum(eigvals), variance_kept * total) + 1) if total > 0 else 1
        k = max(1, min(k, d - 1)) if d > 1 else 1
        expected_q = max(float(eigvals[k:].sum()), floor)
        return cls(eigvecs[:, :k], np.maximum(eigvals[:k], floor), expected_q)

    def score(self, centred: FloatArray) -> FloatArray:
        """Rows already centred and scaled, missing values at 0."""
        latent = centred @ self.basis
        t2 = (latent**2 / self.variances).sum(axis=1) / len(self.variances)
        residual = centred - latent @ self.basis.T
        q = (residual**2).sum(axis=1) / self.expected_q
        scores: FloatArray = np.nan_to_num(0.5 * (t2 + q), nan=0.0, posinf=np.finfo(np.float64).max)
        return scores


class _Subspace:
    """The range scaling learnt by :class:`MSPCDetector` and the principal subspace it gives."""

    def __init__(self, offset: FloatArray, scale: FloatArray, mean: FloatArray, principal: Principal) -> None:
        self.offset, self.scale, self.mean, self.principal = offset, scale, mean, principal

    @classmethod
    def fit(cls, det: MSPCDetector) -> _Subspace:
        seen = np.isfinite(det.mean)
        offset = np.where(seen, np.nan_to_num(det.low), 0.0)
        width = np.nan_to_num(det.high - det.low)
        level = np.abs(np.nan_to_num(det.mean))
        scale = np.where(width > 0, width, np.where(level > 0, level, 1.0))
        mean = np.where(seen, (np.nan_to_num(det.mean) - offset) / scale, 0.0)
        cov = det.scatter / (det.n - 1) / np.outer(scale, scale)
        return cls(offset, scale, mean, Principal.fit(cov, det.variance_kept))

    def score(self, X: FloatArray) -> FloatArray:
        u = (X - self.offset) / self.scale
        centred = np.where(np.isfinite(u), u - self.mean, 0.0)  # a missing value sits at the mean
        return self.principal.score(centred)
