"""A training job's ranks as columns (each rank's usual compute time and its straggler decision), and
the compute times of its recent steps waiting to be compared.

The straggler check compares every rank of a step at once, so its per-rank state lives in the
library's column form: a :class:`RobustBank` (each rank's own compute-time baseline) and a
:class:`DecideBank` (min-hits, hysteresis) over one :class:`ArrayStore` entry per rank, and a step
is one vector update whatever the world size. Ranks are given dense slots in order of appearance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from vigil.analytics.models.base import FloatArray
from vigil.analytics.models.columns import ArrayStore, IntArray
from vigil.analytics.models.decide import DecideBank, DecideConfig
from vigil.analytics.models.robust import RobustBank, RobustConfig

MAX_RANKS = 65_536  # ranks per job with a straggler state; a larger world's further ranks are not compared
LUT_RANKS = 1 << 20  # ranks below this are looked up in an array; a rank number beyond it, in a dict


class RankTable:
    def __init__(self, own: RobustConfig, post: DecideConfig) -> None:
        self.store = ArrayStore()
        self.own = RobustBank(own, self.store, prefix="own_")
        self.post = DecideBank(post, self.store, prefix="post_")
        self.slot: dict[int, int] = {}
        self.rank: list[int] = []
        self.hosts: list[str] = []  # the job's host names; host_of indexes them
        self._host_ids: dict[str, int] = {}
        self.host_of = np.zeros(0, dtype=np.intp)  # per slot
        self.gpu = np.zeros(0, dtype=np.int64)  # per slot, -1: unknown
        self._lut = np.full(0, -1, dtype=np.intp)  # rank -> slot for ranks below LUT_RANKS (the usual world)

    def columns(self) -> list[str]:
        return self.own.columns() + self.post.columns()

    def host(self, slot: int) -> str:
        return self.hosts[int(self.host_of[slot])]

    def slots(self, ranks: IntArray, hosts: Sequence[str], host_index: IntArray, gpus: IntArray) -> IntArray:
        """The slot of each rank (-1 past MAX_RANKS), new ranks added; a rank's host and GPU follow its rows.

        Row ``i`` runs on ``hosts[host_index[i]]``. Known ranks below ``LUT_RANKS`` cost one array lookup."""
        known = ranks < self._lut.size
        slots = np.full(ranks.size, -1, dtype=np.intp)
        slots[known] = self._lut[ranks[known]]
        new = slots < 0
        if new.any():
            for i in np.flatnonzero(new).tolist():
                slots[i] = self._add(int(ranks[i]))
        ok = slots >= 0
        names = np.array([self._host_id(h) for h in hosts], dtype=np.intp)[host_index]
        self.host_of[slots[ok]] = names[ok]
        self.gpu[slots[ok]] = gpus[ok]
        return slots

    def _host_id(self, name: str) -> int:
        found = self._host_ids.get(name)
        if found is None:
            found = self._host_ids[name] = len(self.hosts)
            self.hosts.append(name)
        return found

    def _add(self, rank: int) -> int:
        slot = self.slot.get(rank)
        if slot is not None or len(self.rank) >= MAX_RANKS:
            return -1 if slot is None else slot
        slot = self.slot[rank] = len(self.rank)
        self.rank.append(rank)
        if len(self.rank) > self.store.capacity:
            size = max(16, 2 * len(self.rank))
            self.store.ensure(size)
            self.host_of = np.concatenate([self.host_of, np.zeros(size - self.host_of.size, dtype=np.intp)])
            self.gpu = np.concatenate([self.gpu, np.full(size - self.gpu.size, -1, dtype=np.int64)])
        if rank < LUT_RANKS:
            if rank >= self._lut.size:
                self._lut = np.concatenate(
                    [self._lut, np.full(max(rank + 1, 2 * self._lut.size) - self._lut.size, -1, dtype=np.intp)]
                )
            self._lut[rank] = slot
        return slot

    def dump(self) -> dict[str, Any]:
        n = len(self.rank)
        return {
            "rank": list(self.rank),
            "host": [self.host(slot) for slot in range(n)],
            "gpu": self.gpu[:n].tolist(),
            "cols": {c: np.ascontiguousarray(self.store.col(c)[:n]).tobytes() for c in self.columns()},
        }

    def load(self, raw: Mapping[str, Any]) -> None:
        for rank, host, gpu in zip(raw["rank"], raw["host"], raw["gpu"], strict=True):
            self.slots(np.array([int(rank)]), [str(host)], np.zeros(1, dtype=np.intp), np.array([int(gpu)]))
        n = len(self.rank)
        for name, data in raw["cols"].items():
            if self.store.has(name):
                values = np.frombuffer(data, dtype=self.store.col(name).dtype)
                if values.size == n:
                    self.store.col(name)[:n] = values

    def load_scalars(self, rows: Sequence[Sequence[Any]]) -> None:
        """Ranks as snapshots before the column form wrote them: ``[rank, host, gpu, RobustStat, PostRule]``."""
        for rank, host, gpu, stat, post in rows:
            gpus = np.array([-1 if gpu is None else int(gpu)])
            slot = int(self.slots(np.array([int(rank)]), [str(host)], np.zeros(1, dtype=np.intp), gpus)[0])
            if slot < 0:
                continue
            for key, value in zip(("n", "mean", "mad", "run", "shift"), stat, strict=False):
                self.store.col(f"own_{key}")[slot] = value
            for key, value in zip(("hist", "active", "below", "quiet"), post, strict=False):
                self.store.col(f"post_{key}")[slot] = value


@dataclass(slots=True)
class Pending:
    """Compute times of recent steps, kept until ``step_lag`` newer steps make their ranks complete."""

    step: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    slot: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    compute: FloatArray = field(default_factory=lambda: np.zeros(0))
    ts: FloatArray = field(default_factory=lambda: np.zeros(0))

    NAMES: ClassVar[tuple[str, ...]] = ("step", "slot", "compute", "ts")

    def add(self, step: IntArray, slot: IntArray, compute: FloatArray, ts: FloatArray) -> None:
        self.step = np.concatenate([self.step, step])
        self.slot = np.concatenate([self.slot, slot])
        self.compute = np.concatenate([self.compute, compute])
        self.ts = np.concatenate([self.ts, ts])

    def take(self, up_to: int) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
        """Rows of steps up to ``up_to``, by step, one per (step, rank): the last reported wins."""
        ready = self.step <= up_to
        step, slot, compute, ts = self.step[ready], self.slot[ready], self.compute[ready], self.ts[ready]
        keep = ~ready
        self.step, self.slot, self.compute = self.step[keep], self.slot[keep], self.compute[keep]
        self.ts = self.ts[keep]
        key = step * (1 << 20) + slot  # slots are < 2^16 (MAX_RANKS)
        _, last = np.unique(key[::-1], return_index=True)  # sorted by (step, slot); the last of duplicates
        pick = len(key) - 1 - last
        return step[pick], slot[pick], compute[pick], ts[pick]
