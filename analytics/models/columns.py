"""Per-series state as named numpy columns: the storage of every vectorised (bank) model.

A bank model keeps one entry per series in each of its columns and updates a batch of series (a
*round*: each series at most once) with a few array operations, so thousands of series cost no
Python object per sample. :class:`ArrayStore` is the one implementation: the live service's slot
table keeps its per-series columns in one (they grow with the fleet and are snapshotted per
partition), and so do a single stream's features, tests and benchmarks.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]


@runtime_checkable
class ColumnStore(Protocol):
    """Where a bank's columns live. ``col`` must be called again after the store grows."""

    def add_column(self, name: str, dtype: Any, fill: Any) -> None: ...

    def col(self, name: str) -> npt.NDArray[Any]: ...


class ArrayStore:
    """A growable set of columns of equal length, one entry per series."""

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = capacity
        self._spec: dict[str, tuple[np.dtype[Any], Any]] = {}
        self.cols: dict[str, npt.NDArray[Any]] = {}

    def add_column(self, name: str, dtype: Any, fill: Any) -> None:
        if name in self._spec:
            raise ValueError(f"column {name!r} is already registered")
        self._spec[name] = (np.dtype(dtype), fill)
        self.cols[name] = np.full(self.capacity, fill, dtype=dtype)

    def col(self, name: str) -> npt.NDArray[Any]:
        return self.cols[name]

    def ensure(self, capacity: int) -> None:
        """Grow every column to at least ``capacity`` entries, new entries at their fill value."""
        if capacity <= self.capacity:
            return
        for name, (dtype, fill) in self._spec.items():
            grown = np.full(capacity, fill, dtype=dtype)
            grown[: self.capacity] = self.cols[name]
            self.cols[name] = grown
        self.capacity = capacity

    def has(self, name: str) -> bool:
        return name in self._spec

    def reset(self, index: npt.NDArray[np.intp]) -> None:
        """Put the entries at ``index`` back to every column's fill value (a series slot given up)."""
        for name, (_, fill) in self._spec.items():
            self.cols[name][index] = fill

    def nbytes_per_series(self, names: list[str] | None = None) -> int:
        """Bytes one series occupies in the given columns (all by default)."""
        return sum(self._spec[n][0].itemsize for n in (names if names is not None else self._spec))
