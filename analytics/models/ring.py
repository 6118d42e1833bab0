"""A bounded buffer of the most recent rows, and float arrays as msgpack-able values.

Models that refit on recent history (seasonal, IsolationForest, PCA, autoencoder) keep their
history here: memory is ``capacity x features`` floats whatever the stream's length, and a
snapshot carries the rows so a restored model refits to exactly what it had.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def pack(a: npt.NDArray[Any]) -> dict[str, Any]:
    """An array as msgpack-able values: little-endian float64 bytes plus the shape."""
    return {"shape": list(a.shape), "data": np.ascontiguousarray(a, dtype="<f8").tobytes()}


def unpack(blob: Mapping[str, Any]) -> FloatArray:
    shape = tuple(int(n) for n in blob["shape"])
    return np.frombuffer(blob["data"], dtype="<f8").astype(np.float64).reshape(shape)


def as_rows(X: npt.ArrayLike, n_features: int) -> FloatArray:
    """``X`` as a float (rows, n_features) array: narrower rows are padded with NaN (missing), wider
    ones are refused, since a column only has a name once the model knows the feature."""
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] > n_features:
        raise ValueError(f"expected rows of at most {n_features} features (the model's), got shape {rows.shape}")
    if rows.shape[1] < n_features:
        rows = np.pad(rows, ((0, 0), (0, n_features - rows.shape[1])), constant_values=np.nan)
    return rows


class RowRing:
    """The last ``capacity`` rows pushed; ``count`` is how many were ever pushed (a sample clock)."""

    def __init__(self, capacity: int, n_features: int) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.data = np.full((capacity, n_features), np.nan)
        self.count = 0

    @property
    def size(self) -> int:
        return min(self.count, self.capacity)

    def push(self, rows: FloatArray) -> None:
        n = len(rows)
        if n == 0:
            return
        keep = rows[-self.capacity :]  # older rows of a huge push would be overwritten anyway
        at = (self.count + n - len(keep) + np.arange(len(keep))) % self.capacity
        self.data[at, : keep.shape[1]] = keep
        self.data[at, keep.shape[1] :] = np.nan
        self.count += n

    def rows(self, last: int | None = None) -> FloatArray:
        """The newest ``last`` rows (all held rows by default), oldest first, as a copy."""
        n = self.size if last is None else min(last, self.size)
        at = (self.count - n + np.arange(n)) % self.capacity
        return self.data[at]

    def grow(self, n_features: int) -> None:
        extra = n_features - self.data.shape[1]
        if extra > 0:
            self.data = np.hstack([self.data, np.full((self.capacity, extra), np.nan)])

    def dump(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "count": self.count, "rows": pack(self.rows())}

    @classmethod
    def load(cls, blob: Mapping[str, Any], n_features: int) -> RowRing:
        rows = unpack(blob["rows"])
        ring = cls(int(blob["capacity"]), max(n_features, rows.shape[1] if rows.ndim == 2 else 0))
        ring.count = int(blob["count"]) - len(rows)
        if len(rows):
            ring.push(rows)
        return ring
