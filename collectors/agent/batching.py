"""One ``TelemetryBatch`` per host per tick from the runs that finished for that tick.

The merged series tuple is cached: while every collector returns the same series tuple object (its
keys did not change, see ``SeriesCache``), the layout (series, de-duplication index, counter
columns) is reused and a tick costs one ``numpy.concatenate``. The codec's own per-layout caches
then hit too, since the batch carries the same tuple object.

Two things would make the whole batch undeliverable or ambiguous, so they are fixed here, per
series, and reported as the offending collector's Problems: a series yielded twice (the last value
wins) and a non-finite value in a counter (``*_total``) series, which the codec rejects (the
sample is left out of this tick).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from vigil.collectors.agent.worker import CollectResult
from vigil.collectors.base import Problem

from vigil.catalog import is_counter
from vigil.events import FloatArray, TelemetryBatch

IntArray = np.ndarray
OwnedProblems = list[tuple[str, Problem]]  # (collector, problem)


@dataclass(frozen=True, slots=True)
class _Layout:
    parts: tuple[tuple[str, ...], ...]  # the collectors' series tuples, compared by identity
    names: tuple[str, ...]  # the collectors, in order
    series: tuple[str, ...]
    take: IntArray | None  # positions to keep in the concatenated values (None: all, no duplicates)
    counters: IntArray  # columns of counter series
    owners: IntArray  # collector index of each column
    duplicates: tuple[tuple[str, Problem], ...]

    def matches(self, names: tuple[str, ...], parts: Sequence[tuple[str, ...]]) -> bool:
        return (
            names == self.names
            and len(parts) == len(self.parts)
            and all(a is b for a, b in zip(parts, self.parts, strict=True))
        )


def _layout(names: tuple[str, ...], parts: tuple[tuple[str, ...], ...]) -> _Layout:
    merged = [key for part in parts for key in part]
    owner_of = [i for i, part in enumerate(parts) for _ in part]
    last = {key: pos for pos, key in enumerate(merged)}
    take: IntArray | None = None
    duplicates: list[tuple[str, Problem]] = []
    if len(last) < len(merged):
        first: dict[str, int] = {}
        for pos, key in enumerate(merged):
            first.setdefault(key, pos)
        positions = [last[key] for key in first]  # each series once, where first seen, with its last value
        take = np.array(positions, dtype=np.intp)
        seen: set[str] = set()
        for pos, key in enumerate(merged):
            if key in seen:
                duplicates.append((names[owner_of[pos]], Problem("duplicate_series", key)))
            seen.add(key)
        series = tuple(merged[pos] for pos in positions)
        owners = np.array([owner_of[pos] for pos in positions], dtype=np.intp)
    else:
        series = tuple(merged)
        owners = np.array(owner_of, dtype=np.intp)
    counters = np.array([i for i, key in enumerate(series) if is_counter(key.partition("{")[0])], dtype=np.intp)
    return _Layout(parts, names, series, take, counters, owners, tuple(duplicates))


class BatchAssembler:
    def __init__(self, host: str, cluster: str) -> None:
        self.host = host
        self.cluster = cluster
        self._layout: _Layout | None = None

    def assemble(self, tick: float, results: Sequence[CollectResult]) -> tuple[TelemetryBatch | None, OwnedProblems]:
        """The batch for ``tick`` (None when no run yielded a sample) and the problems found merging."""
        runs = sorted((r for r in results if r.series), key=lambda r: r.collector)
        if not runs:
            return None, []
        names = tuple(r.collector for r in runs)
        parts = tuple(r.series for r in runs)
        layout = self._layout
        if layout is None or not layout.matches(names, parts):
            layout = self._layout = _layout(names, parts)
        values: FloatArray = np.concatenate([r.values for r in runs]) if len(runs) > 1 else runs[0].values
        if layout.take is not None:
            values = values[layout.take]
        problems = list(layout.duplicates)
        series = layout.series
        if layout.counters.size:
            bad = ~np.isfinite(values[layout.counters])
            if bad.any():
                series, values = self._drop_columns(layout, layout.counters[bad], values, problems)
        if not series:
            return None, problems
        ts = np.array([tick], dtype=np.float64)
        return TelemetryBatch(self.host, self.cluster, ts, series, values.reshape(1, -1)), problems

    @staticmethod
    def _drop_columns(
        layout: _Layout, columns: IntArray, values: FloatArray, problems: OwnedProblems
    ) -> tuple[tuple[str, ...], FloatArray]:
        for column in columns:
            owner = layout.names[int(layout.owners[column])]
            problems.append((owner, Problem("non_finite_counter", f"{layout.series[column]}: {values[column]}")))
        keep = np.ones(len(layout.series), dtype=bool)
        keep[columns] = False
        series = tuple(key for key, kept in zip(layout.series, keep, strict=True) if kept)
        return series, values[keep]
