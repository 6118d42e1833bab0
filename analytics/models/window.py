"""Multivariate models refitted on a sliding window of recent rows (one host's feature vectors).

The model is fitted every ``refit_every`` learned rows on the last ``window`` rows, after robust
scaling with the window's median and IQR (a feature that is constant in the window falls back to
its standard deviation, then to a floor, and scaled values are clipped at ``clip`` so one stuck or
jumping feature cannot dominate unboundedly). Missing values are imputed at the median (0 once
scaled). Until the first fit every score is 0.0.

Scoring between refits is a pure function of the last fit, so ``process_many`` scores whole
segments between refit points in one call. The refit can also be taken off the hot path:
``prepare_fit`` (heavy, reads a copy of the window, safe in a worker thread) then ``apply_fit``
(cheap). The ring keeps ``window + refit_every`` rows so the rows of the last fit are always
recoverable: a restored model refits on them with the same seed and scores exactly as before.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.ring import RowRing, as_rows, pack, unpack

IQR_TO_SIGMA = 1.349  # interquartile range of a standard normal


@dataclass(frozen=True, slots=True)
class WindowFit:
    """One fit: the robust scaling, the model-specific payload and how many rows it saw."""

    center: FloatArray
    scale: FloatArray
    model: Any
    rows: int  # rows of the window it was fitted on
    at: int  # the ring's sample count when the window was read


def robust_scaling(X: FloatArray, rel_floor: float = 1e-3, abs_floor: float = 1e-6) -> tuple[FloatArray, FloatArray]:
    """Per-column median and IQR/1.349 (std where the IQR is 0), floored; all-NaN columns: 0 and 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are handled below
        center = np.nanmedian(X, axis=0)
        q75, q25 = np.nanpercentile(X, [75, 25], axis=0)
        std = np.nanstd(X, axis=0)
    scale = (q75 - q25) / IQR_TO_SIGMA
    scale = np.where(scale > 0, scale, std)
    scale = np.maximum(np.nan_to_num(scale, nan=1.0), np.maximum(rel_floor * np.abs(np.nan_to_num(center)), abs_floor))
    return np.nan_to_num(center), scale


class WindowModel(Detector):
    """Base of IsolationForest, PCA and autoencoder: the window, the scaling and the refit schedule."""

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        window: int = 1024,
        refit_every: int = 256,
        min_fit: int = 64,
        seed: int = 0,
        clip: float = 10.0,
    ) -> None:
        super().__init__(features)
        if window < 2 or min_fit < 2 or refit_every < 0 or clip <= 0:
            raise ValueError("window and min_fit must be >= 2, refit_every >= 0 (0: only refit()), clip > 0")
        self.window, self.refit_every, self.min_fit = window, refit_every, min(min_fit, window)
        self.seed, self.clip = seed, clip
        # Room for the rows of the last fit plus those learned since, so a snapshot can reproduce it.
        self.ring = RowRing(window + (refit_every or window), len(self.features))
        self.fit: WindowFit | None = None

    def _grow(self, n_features: int) -> None:
        self.ring.grow(n_features)

    # -- the model-specific part
    @abstractmethod
    def _fit_model(self, Z: FloatArray) -> Any:
        """Fit on robust-scaled rows (no NaN); return what ``_score_model`` needs."""

    @abstractmethod
    def _score_model(self, model: Any, Z: FloatArray) -> FloatArray:
        """Scores of robust-scaled rows (no NaN), higher is more anomalous."""

    # -- scaling
    def scaled(self, fit: WindowFit, X: FloatArray) -> FloatArray:
        d = len(fit.center)
        X = X[:, :d] if X.shape[1] >= d else np.pad(X, ((0, 0), (0, d - X.shape[1])), constant_values=np.nan)
        Z = (X - fit.center) / fit.scale
        return np.clip(np.nan_to_num(Z, nan=0.0), -self.clip, self.clip)

    # -- refits
    def due(self) -> bool:
        if self.fit is None:
            return self.ring.size >= self.min_fit
        return self.refit_every > 0 and self.ring.count - self.fit.at >= self.refit_every

    def window_rows(self) -> tuple[FloatArray, int]:
        """A copy of the rows the next fit uses and the sample count they end at (for a worker thread)."""
        return self.ring.rows(self.window), self.ring.count

    def prepare_fit(self, rows: FloatArray | None = None, at: int | None = None) -> WindowFit:
        """Fit on ``rows`` (by default the last ``window`` rows); heavy, touches no model state, so
        ``prepare_fit(*model.window_rows())`` may run in a worker thread while the model scores."""
        X = self.ring.rows(self.window) if rows is None else rows
        center, scale = robust_scaling(X)
        shell = WindowFit(center, scale, None, len(X), self.ring.count if at is None else at)
        return WindowFit(center, scale, self._fit_model(self.scaled(shell, X)), len(X), shell.at)

    def apply_fit(self, fit: WindowFit) -> None:
        self.fit = fit

    def refit(self) -> None:
        if self.ring.size >= 2:
            self.apply_fit(self.prepare_fit())

    # -- Detector API
    def learn_many(self, X: FloatArray) -> None:
        X = as_rows(X, len(self.features))
        while len(X):
            take = self._until_refit(len(X))
            self.ring.push(X[:take])
            X = X[take:]
            if self.due():
                self.refit()

    def _until_refit(self, n: int) -> int:
        """Rows that can be pushed before the next refit point."""
        if self.fit is None:
            return max(1, min(n, self.min_fit - self.ring.size))
        if self.refit_every == 0:
            return n
        return max(1, min(n, self.refit_every - (self.ring.count - self.fit.at)))

    def score_many(self, X: FloatArray) -> FloatArray:
        X = as_rows(X, len(self.features))
        if self.fit is None or len(X) == 0:
            return np.zeros(len(X))
        scores = self._score_model(self.fit.model, self.scaled(self.fit, X))
        return np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)

    def process_many(self, X: FloatArray) -> FloatArray:
        """Score each segment between refit points with the fit in force, then learn it."""
        X = as_rows(X, len(self.features))
        out = np.empty(len(X))
        i = 0
        while i < len(X):
            take = self._until_refit(len(X) - i)
            out[i : i + take] = self.score_many(X[i : i + take])
            self.learn_many(X[i : i + take])
            i += take
        return out

    # -- state
    def state(self) -> dict[str, Any]:
        fit = self.fit
        return {
            "ring": self.ring.dump(),
            "fit": None if fit is None else {"rows": fit.rows, "at": fit.at, "model": self._dump_model(fit)},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.ring = RowRing.load(state["ring"], len(self.features))
        raw = state.get("fit")
        self.fit = None
        if raw is not None:
            at, rows = int(raw["at"]), int(raw["rows"])
            held = self.ring.rows()
            end = len(held) - (self.ring.count - at)
            if end - rows < 0:  # only with refit() on a timer falling far behind: refit on what is held
                at, end, rows = self.ring.count, len(held), min(self.window, len(held))
            self.fit = self._load_model(raw["model"], held[end - rows : end], at)

    def _dump_model(self, fit: WindowFit) -> Any:
        """What a snapshot keeps of a fit; by default nothing: the fit is redone on its rows."""
        return None

    def _load_model(self, raw: Any, rows: FloatArray, at: int) -> WindowFit:
        return self.prepare_fit(rows, at)

    @staticmethod
    def pack_scaling(fit: WindowFit) -> dict[str, Any]:
        return {"center": pack(fit.center), "scale": pack(fit.scale)}

    @staticmethod
    def unpack_scaling(raw: Mapping[str, Any]) -> tuple[FloatArray, FloatArray]:
        return unpack(raw["center"]), unpack(raw["scale"])
