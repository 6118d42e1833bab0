"""The detector API: score first, then learn; one stream of feature vectors per instance.

A sample is either a mapping ``{feature: value}`` (``learn_one``/``score_one``) or a row of a 2-D
float array whose columns are :attr:`Detector.features` in order (``learn_many``/``score_many``).
Missing features are NaN and ignored; a feature seen for the first time is added. Scores are
finite floats, higher is more anomalous, 0.0 when the model knows nothing yet.

``score_many`` never learns; ``process_many`` is the causal loop (each row scored with the state
learnt from the rows before it, then learnt), which evaluation and the service use. Models that
can vectorise it override it; the default loops over rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class Detector(ABC):
    name: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, features: Sequence[str] = ()) -> None:
        self.features: list[str] = list(features)
        self._index: dict[str, int] = {f: i for i, f in enumerate(self.features)}

    # -- mapping <-> row
    def row(self, x: Mapping[str, float]) -> FloatArray:
        """``x`` as a row over :attr:`features`, adding features not seen before (NaN where missing)."""
        for key in x:
            if key not in self._index:
                self._index[key] = len(self.features)
                self.features.append(key)
                self._grow(len(self.features))
        out = np.full(len(self.features), np.nan)
        for key, value in x.items():
            out[self._index[key]] = value
        return out

    def _grow(self, n_features: int) -> None:  # noqa: B027
        """Resize per-feature state after a new feature appeared (models with such state override)."""

    def learn_one(self, x: Mapping[str, float]) -> None:
        self.learn_many(self.row(x)[None, :])

    def score_one(self, x: Mapping[str, float]) -> float:
        known = {k: v for k, v in x.items() if k in self._index}  # scoring must not add features
        row = np.full(len(self.features), np.nan)
        for key, value in known.items():
            row[self._index[key]] = value
        return float(self.score_many(row[None, :])[0])

    @abstractmethod
    def learn_many(self, X: FloatArray) -> None:
        """Learn rows in time order."""

    @abstractmethod
    def score_many(self, X: FloatArray) -> FloatArray:
        """One finite score per row, without learning."""

    def process_many(self, X: FloatArray) -> FloatArray:
        out = np.empty(len(X))
        for i in range(len(X)):
            out[i] = self.score_many(X[i : i + 1])[0]
            self.learn_many(X[i : i + 1])
        return out

    # -- state
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything learnt, as msgpack-able values (lists, numbers, strings)."""

    @abstractmethod
    def load_state(self, state: Mapping[str, Any]) -> None: ...

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "features": list(self.features), "state": self.state()}

    def restore(self, blob: Mapping[str, Any]) -> None:
        if blob.get("name") != self.name or blob.get("version") != self.version:
            raise ValueError(
                f"snapshot is {blob.get('name')} v{blob.get('version')}, this is {self.name} v{self.version}"
            )
        self.features = list(blob["features"])
        self._index = {f: i for i, f in enumerate(self.features)}
        self.load_state(blob["state"])
