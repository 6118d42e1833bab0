"""Series → integer slots of the state arrays, and one poll's telemetry as round-ordered arrays.

Telemetry is scored without a Python object per sample: every series (host, canonical key) owns a
slot, detectors keep their state in columns indexed by slot, and a poll's batches become flat
arrays. Within a poll one series usually appears several times (consecutive ticks), so samples are
ordered into *rounds* by their occurrence rank within the slot: each round touches every slot at
most once, so a round's update is one vectorised step and rounds run in stream order.

Slots are allocated within a :class:`~vigil.analytics.stages.limits.SeriesBudget` (series per host and per
partition): a batch's new series beyond it get no slot, are cut from the batch and reported as a
:class:`~vigil.analytics.stages.limits.Refusal`. The check runs once per distinct series set, so a known
host's batch still costs one dict lookup.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from vigil.analytics.models.columns import ArrayStore
from vigil.analytics.stages.limits import Refusal, Scope, SeriesBudget

from vigil.catalog import is_counter
from vigil.events import TelemetryBatch, parse_series_key

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]
GPU_LABELS = ("gpu_index", "gpu")  # the catalog's older spelling is "gpu"
# Series sets remembered per partition. Bounded, so a producer that sends ever new sets cannot grow
# the cache without end; when full it starts over (a miss costs one pass over the set's names).
CACHE_SETS = 4096


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A series set's slots; with ``keep``, the columns that got one (the rest were refused)."""

    slots: IntArray
    keep: IntArray | None = None
    series: tuple[str, ...] = ()  # the kept series names, when ``keep`` is set
    scope: Scope = "host"
    limit: int = 0


@dataclass(frozen=True, slots=True)
class Entity:
    """What one alert is about: a GPU (host, gpu_index) or a host (gpu_index empty)."""

    cluster: str
    host: str
    gpu_index: str

    def labels(self) -> dict[str, str]:
        out = {"cluster": self.cluster, "host": self.host}
        if self.gpu_index:
            out["gpu_index"] = self.gpu_index
        return out


class SlotTable:
    """Slot allocation over the library's column store (:class:`ArrayStore`): one entry per series.

    Stages register columns (``add_column``) and must read them through ``col`` each time, because
    growing reallocates. Slots of a revoked partition go back to a free list.
    """

    def __init__(self, capacity: int = 1024, budget: SeriesBudget | None = None) -> None:
        self.store = ArrayStore(capacity)
        self.size = 0  # high-water mark: slots [0, size) have been handed out at least once
        self.budget = budget or SeriesBudget()  # unlimited unless given
        self.refusals: list[Refusal] = []  # batches cut by the budget since the caller last took them
        self._free: list[int] = []
        self._index: dict[tuple[str, str], int] = {}  # (host, series key) -> slot
        self._cache: dict[int, dict[tuple[str, tuple[str, ...]], _Admitted]] = {}  # per partition
        self.keys: list[tuple[str, str, str] | None] = [None] * capacity  # (cluster, host, series key)
        self.entities: list[Entity] = []
        self._entity_ids: dict[Entity, int] = {}
        self.add_column("partition", np.int32, -1)
        self.add_column("entity", np.int32, -1)
        self.add_column("metric", np.int32, -1)
        self.add_column("counter", np.bool_, False)
        self.add_column("last_value", np.float64, np.nan)  # for counter rates across polls
        self.add_column("last_ts", np.float64, np.nan)
        self.metrics: dict[str, int] = {}

    # -- columns (the ColumnStore protocol, so a library bank keeps its state here)
    @property
    def capacity(self) -> int:
        return self.store.capacity

    def add_column(self, name: str, dtype: Any, fill: Any) -> None:
        self.store.add_column(name, dtype, fill)

    def col(self, name: str) -> npt.NDArray[Any]:
        return self.store.cols[name]

    def series_of(self, slot: int) -> str:
        key = self.keys[slot]
        return key[2] if key is not None else ""

    def metric_id(self, metric: str) -> int:
        return self.metrics.setdefault(metric, len(self.metrics))

    @property
    def in_use(self) -> int:
        return self.size - len(self._free)

    # -- lookup
    def admit(self, partition: int, batch: TelemetryBatch) -> tuple[IntArray, TelemetryBatch]:
        """The slots of a batch's series and the batch itself, cut to the series that have a slot.

        One dict lookup when this host's series set is known; a set with series over the budget
        comes back without them (and is recorded in ``refusals``) every time it is sent.
        """
        per_part = self._cache.setdefault(partition, {})
        key = (batch.host, batch.series)
        found = per_part.get(key)
        if found is None:
            found = self._allocate(partition, batch)
            limit = self.budget.per_host
            if limit is None or len(batch.series) <= limit:  # wider sets are refused in part anyway
                if len(per_part) >= CACHE_SETS:
                    per_part.clear()
                per_part[key] = found
        if found.keep is None:
            return found.slots, batch
        refused = len(batch.series) - found.keep.size
        ts = float(batch.ts.max()) if batch.ts.size else 0.0
        self.refusals.append(
            Refusal(batch.cluster, batch.host, found.scope, found.limit, refused, refused * batch.ts.size, ts)
        )
        cut = TelemetryBatch(batch.host, batch.cluster, batch.ts, found.series, batch.values[:, found.keep])
        return found.slots, cut

    def take_refusals(self) -> list[Refusal]:
        out, self.refusals = self.refusals, []
        return out

    def _allocate(self, partition: int, batch: TelemetryBatch) -> _Admitted:
        slots: list[int] = []
        keep: list[int] = []
        over: tuple[Scope, int] | None = None
        for i, series in enumerate(batch.series):
            slot = self._index.get((batch.host, series))
            if slot is None:
                exceeded = self.budget.exceeded(partition, batch.host)
                if exceeded is not None:
                    over = exceeded
                    continue
                slot = self.slot(partition, batch.cluster, batch.host, series)
            slots.append(slot)
            keep.append(i)
        if over is None:  # a series is skipped only when a limit is exceeded
            return _Admitted(np.array(slots, dtype=np.intp))
        kept = tuple(batch.series[i] for i in keep)
        return _Admitted(np.array(slots, dtype=np.intp), np.array(keep, dtype=np.intp), kept, over[0], over[1])

    def slot(self, partition: int, cluster: str, host: str, series: str) -> int:
        """The slot of a series, allocated if new (outside the budget check: ``admit`` makes it)."""
        found = self._index.get((host, series))
        if found is not None:
            return found
        slot = self._free.pop() if self._free else self._grow_one()
        self._index[(host, series)] = slot
        self.keys[slot] = (cluster, host, series)
        self.budget.add(partition, host)
        metric, labels = parse_series_key(series)
        gpu = next((labels[k] for k in GPU_LABELS if k in labels), "")
        cols = self.store.cols
        cols["partition"][slot] = partition
        cols["entity"][slot] = self.entity_id(Entity(cluster, host, gpu))
        cols["metric"][slot] = self.metric_id(metric)
        cols["counter"][slot] = is_counter(metric)
        return slot

    def entity_id(self, entity: Entity) -> int:
        eid = self._entity_ids.get(entity)
        if eid is None:
            eid = self._entity_ids[entity] = len(self.entities)
            self.entities.append(entity)
        return eid

    def _grow_one(self) -> int:
        if self.size == self.capacity:
            self.keys.extend([None] * self.capacity)
            self.store.ensure(self.capacity * 2)
        self.size += 1
        return self.size - 1

    # -- partitions
    def slots_of(self, partition: int) -> IntArray:
        return np.flatnonzero(self.col("partition")[: self.size] == partition).astype(np.intp)

    def release(self, partition: int) -> IntArray:
        """Forget a partition's series: reset their columns and free their slots."""
        slots = self.slots_of(partition)
        self.store.reset(slots)
        hosts: list[str] = []
        for slot in slots.tolist():
            key = self.keys[slot]
            if key is not None:
                self._index.pop((key[1], key[2]), None)
                hosts.append(key[1])
            self.keys[slot] = None
            self._free.append(slot)
        self.budget.remove(partition, hosts)
        self._cache.pop(partition, None)
        return slots

    def export(self, slots: IntArray, names: Sequence[str]) -> dict[str, Any]:
        keys = [self.keys[s] for s in slots.tolist()]
        return {
            "keys": [list(k) for k in keys if k is not None],
            "cols": {n: np.ascontiguousarray(self.col(n)[slots]).tobytes() for n in names},
            "dtypes": {n: self.col(n).dtype.str for n in names},
        }

    def import_(self, partition: int, blob: dict[str, Any]) -> IntArray:
        """Allocate the snapshot's series in ``partition`` and load their columns.

        Within the budget: a snapshot written before the limits (or with higher ones) keeps its
        first series up to the limit; the rest start cold if they are ever admitted."""
        slots: list[int] = []
        keep: list[int] = []
        for i, (cluster, host, series) in enumerate(blob["keys"]):
            if (host, series) in self._index or self.budget.exceeded(partition, host) is None:
                slots.append(self.slot(partition, cluster, host, series))
                keep.append(i)
        taken, rows = np.array(slots, dtype=np.intp), np.array(keep, dtype=np.intp)
        for name, raw in blob["cols"].items():
            if self.store.has(name) and taken.size:
                values = np.frombuffer(raw, dtype=np.dtype(blob["dtypes"][name]))
                if values.size == len(blob["keys"]):
                    self.col(name)[taken] = values[rows]
        return taken


@dataclass(frozen=True, slots=True)
class Frame:
    """One poll's samples, ordered by round; ``rounds[i]`` is a (start, stop) range."""

    slots: IntArray
    ts: FloatArray
    values: FloatArray
    rates: FloatArray  # per-second rate for counter slots (NaN for gauges and first samples)
    rounds: list[tuple[int, int]]

    @property
    def size(self) -> int:
        return int(self.slots.size)


def build_frame(table: SlotTable, parts: Sequence[tuple[IntArray, TelemetryBatch]]) -> Frame:
    """Flatten (slots, batch) pairs into round-ordered arrays and compute counter rates."""
    if not parts:
        empty = np.empty(0)
        return Frame(np.empty(0, dtype=np.intp), empty, empty, empty, [])
    slots = np.concatenate([np.tile(s, b.ts.size) for s, b in parts])
    values = np.concatenate([b.values.ravel() for _, b in parts])
    ts = np.concatenate([np.repeat(b.ts, s.size) for s, b in parts])
    by_slot = np.argsort(slots, kind="stable")  # stream order within each slot is kept
    sorted_slots = slots[by_slot]
    starts = np.ones(sorted_slots.size, dtype=bool)
    starts[1:] = sorted_slots[1:] != sorted_slots[:-1]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(sorted_slots.size), 0))
    rank_sorted = np.arange(sorted_slots.size) - group_start
    rates_sorted = _rates(table, sorted_slots, values[by_slot], ts[by_slot], starts)
    order = np.argsort(rank_sorted, kind="stable")
    counts = np.bincount(rank_sorted)
    edges = np.concatenate(([0], np.cumsum(counts))).tolist()
    take = by_slot[order]
    return Frame(slots[take], ts[take], values[take], rates_sorted[order], list(itertools.pairwise(edges)))


def _rates(
    table: SlotTable, slots: IntArray, values: FloatArray, ts: FloatArray, starts: npt.NDArray[np.bool_]
) -> FloatArray:
    """Counter rates from consecutive samples of each slot (slot-sorted input); resets give NaN."""
    last_v, last_t = table.col("last_value"), table.col("last_ts")
    prev_v = np.empty_like(values)
    prev_t = np.empty_like(ts)
    prev_v[1:], prev_t[1:] = values[:-1], ts[:-1]
    prev_v[starts], prev_t[starts] = last_v[slots[starts]], last_t[slots[starts]]
    dt = ts - prev_t
    delta = values - prev_v
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where((dt > 0) & (delta >= 0), delta / dt, np.nan)
    rates[~table.col("counter")[slots]] = np.nan
    ends = np.ones(slots.size, dtype=bool)
    ends[:-1] = starts[1:]
    last_v[slots[ends]] = values[ends]
    last_t[slots[ends]] = ts[ends]
    return rates
