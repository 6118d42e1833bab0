"""One collector's runs: a thread per collector, each run's items sorted into columns.

Why a thread per collector rather than a pool: collectors block in I/O and in C calls (NVML,
smartctl, ipmitool, a stuck NFS mount under psutil) that Python cannot interrupt, so a hung source
holds its thread for good. With a thread each, a hung collector stops only itself; with a pool, a
few hung runs would take every worker and starve the healthy collectors queued behind them. A node
runs a handful of collectors, and an idle thread sleeping on its queue costs next to nothing.

A run keeps no Python object per sample beyond the ``(key, value)`` tuples the collector yields:
keys go into one list, values into another, turned into one float64 array on the worker thread.
The series tuple is reused while the collector yields the same keys in the same order, so the
batch assembler can recognise an unchanged layout by identity.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from vigil.collectors.base import Collector, Problem

from vigil.events import FloatArray, LogEvent, TrainingStep, TrainingStepBatch

log = logging.getLogger(__name__)

_EMPTY: FloatArray = np.zeros(0, dtype=np.float64)


@dataclass(slots=True)
class CollectResult:
    collector: str
    tick: float  # the tick the run was started for: its samples are stamped with it
    series: tuple[str, ...] = ()
    values: FloatArray = field(default_factory=lambda: _EMPTY)
    logs: list[LogEvent | TrainingStep | TrainingStepBatch] = field(default_factory=list)  # discrete events, by arrival
    problems: list[Problem] = field(default_factory=list)
    exception: Exception | None = None
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        """The run ended normally and read something (a run with only Problems read nothing)."""
        return self.exception is None and (bool(self.series) or bool(self.logs) or not self.problems)


class SeriesCache:
    """The last series tuple of one collector, reused while its keys do not change."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._series: tuple[str, ...] = ()

    def series(self, keys: list[str]) -> tuple[str, ...]:
        if keys != self._keys:
            self._keys, self._series = keys, tuple(keys)
        return self._series


def run_collector(name: str, collector: Collector, tick: float, cache: SeriesCache) -> CollectResult:
    """One ``collect()``: samples, log events and problems; an exception ends the run but keeps
    what was yielded before it."""
    result = CollectResult(name, tick)
    keys: list[str] = []
    values: list[float] = []
    started = time.perf_counter()
    try:
        for item in collector.collect():
            if type(item) is tuple and len(item) == 2:
                keys.append(item[0])
                values.append(item[1])
            elif isinstance(item, LogEvent | TrainingStep | TrainingStepBatch):
                result.logs.append(item)
            elif isinstance(item, Problem):
                result.problems.append(item)
            else:
                result.problems.append(Problem("bad_item", f"collect() yielded a {type(item).__name__}"))
    except Exception as exc:  # noqa: BLE001 - a collector's failure is counted by the runner, never fatal
        result.exception = exc
    result.seconds = time.perf_counter() - started
    if keys:
        result.values = _as_floats(keys, values, result.problems)
        result.series = cache.series(keys)
    return result


def _as_floats(keys: list[str], values: list[float], problems: list[Problem]) -> FloatArray:
    """One float64 array; a bad key or value (rare) drops that sample with a Problem."""
    try:
        array = np.array(values, dtype=np.float64)
        if all(type(k) is str and k for k in keys):
            return array
    except (TypeError, ValueError):
        pass
    good_keys: list[str] = []
    good: list[float] = []
    for key, value in zip(keys, values, strict=True):
        try:
            number = float(value)
        except (TypeError, ValueError):
            problems.append(Problem("bad_sample", f"{key!r}: value {value!r} is not a number"))
            continue
        if type(key) is not str or not key:
            problems.append(Problem("bad_sample", f"series key {key!r} is not a non-empty string"))
            continue
        good_keys.append(key)
        good.append(number)
    keys[:] = good_keys
    return np.array(good, dtype=np.float64)


class CollectorWorker:
    """Runs one collector on its own daemon thread (a hung collector must not keep the agent alive)."""

    def __init__(self, name: str, collector: Collector, results: queue.SimpleQueue[CollectResult]) -> None:
        self.name = name
        self.collector = collector
        self._results = results
        self._jobs: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self._cache = SeriesCache()
        self._thread = threading.Thread(target=self._loop, name=f"collector-{name}", daemon=True)
        self.busy_since: float | None = None  # monotonic time of the run in progress
        self.busy_tick: float | None = None
        self.timed_out = False  # the run in progress was given up on; its result will be discarded

    def start(self) -> None:
        self._thread.start()

    def dispatch(self, tick: float) -> bool:
        """Start a run for ``tick``; False while the previous run is still going."""
        if self.busy_since is not None:
            return False
        self.busy_since, self.busy_tick, self.timed_out = time.monotonic(), tick, False
        self._jobs.put(tick)
        return True

    def done(self) -> None:
        self.busy_since = self.busy_tick = None

    def stop(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while (tick := self._jobs.get()) is not None:
            self._results.put(run_collector(self.name, self.collector, tick, self._cache))
