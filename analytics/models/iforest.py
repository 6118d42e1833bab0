"""IsolationForest over one host's feature vectors, refitted on a sliding window (scikit-learn).

Score: the isolation score of Liu et al. (``-score_samples``), in (0, 1]; about 0.5 and below is
ordinary, values towards 1 are isolated in few splits. Trees are grown with a fixed seed, so a
restored model regrows the same forest from the window rows its snapshot carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from vigil.analytics.models.base import FloatArray
from vigil.analytics.models.window import WindowModel


class IsolationForestDetector(WindowModel):
    name = "iforest"

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        trees: int = 100,
        max_samples: int = 256,
        window: int = 1024,
        refit_every: int = 256,
        min_fit: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(features, window=window, refit_every=refit_every, min_fit=min_fit, seed=seed)
        if trees < 1 or max_samples < 2:
            raise ValueError("trees must be >= 1 and max_samples >= 2")
        self.trees, self.max_samples = trees, max_samples

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        return {"window": 64, "refit_every": 64, "min_fit": 16, "trees": 10}

    def _fit_model(self, Z: FloatArray) -> Any:
        forest = IsolationForest(
            n_estimators=self.trees, max_samples=min(self.max_samples, len(Z)), random_state=self.seed, n_jobs=1
        )
        return forest.fit(Z)

    def _score_model(self, model: Any, Z: FloatArray) -> FloatArray:
        return np.asarray(-model.score_samples(Z), dtype=np.float64)
