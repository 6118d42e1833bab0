"""PCA reconstruction error over one host's feature vectors, refitted on a sliding window.

The principal subspace keeps the components that explain ``variance`` of the window's robust-
scaled rows; a row's score is its squared distance from that subspace (the SPE or Q statistic),
in robust-sigma units: the part of the row the host's usual correlations cannot explain. Fitted
with a plain SVD (deterministic), and the components go into the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from vigil.analytics.models.base import FloatArray
from vigil.analytics.models.ring import pack, unpack
from vigil.analytics.models.window import WindowFit, WindowModel


@dataclass(frozen=True, slots=True)
class Subspace:
    mean: FloatArray
    components: FloatArray  # (k, features), orthonormal rows


class PCADetector(WindowModel):
    name = "pca"

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        variance: float = 0.9,
        window: int = 1024,
        refit_every: int = 256,
        min_fit: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(features, window=window, refit_every=refit_every, min_fit=min_fit, seed=seed)
        if not 0 < variance <= 1:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        self.variance = variance

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        return {"window": 64, "refit_every": 32, "min_fit": 16}

    def _fit_model(self, Z: FloatArray) -> Any:
        mean = Z.mean(axis=0)
        _, s, vt = np.linalg.svd(Z - mean, full_matrices=False)
        energy = s**2
        total = energy.sum()
        k = int(np.searchsorted(np.cumsum(energy) / total, self.variance) + 1) if total > 0 else 0
        return Subspace(mean, vt[: min(k, len(vt))])

    def _score_model(self, model: Any, Z: FloatArray) -> FloatArray:
        centred = Z - model.mean
        residual = centred - (centred @ model.components.T) @ model.components
        return np.asarray(np.einsum("ij,ij->i", residual, residual), dtype=np.float64)

    def _dump_model(self, fit: WindowFit) -> Any:
        return {**self.pack_scaling(fit), "mean": pack(fit.model.mean), "components": pack(fit.model.components)}

    def _load_model(self, raw: Any, rows: FloatArray, at: int) -> WindowFit:
        if not isinstance(raw, Mapping):
            return super()._load_model(raw, rows, at)
        center, scale = self.unpack_scaling(raw)
        return WindowFit(center, scale, Subspace(unpack(raw["mean"]), unpack(raw["components"])), len(rows), at)
