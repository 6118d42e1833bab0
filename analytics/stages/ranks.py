"""A training job's ranks as columns: each rank's usual compute time and its straggler decision.

The straggler check compares every rank of a step at once, so its per-rank state lives in the
library's column form: a :class:`RobustBank` (each rank's own compute-time baseline) and a
:class:`DecideBank` (min-hits, hysteresis) over one :class:`ArrayStore` entry per rank, and a step
is one vector update whatever the world size. Ranks are given dense slots in order of appearance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vigil.analytics.models.columns import ArrayStore, IntArray
from vigil.analytics.models.decide import DecideBank, DecideConfig
from vigil.analytics.models.robust import RobustBank, RobustConfig

MAX_RANKS = 65_536  # ranks per job with a straggler state; a larger world's further ranks are not compared


class RankTable:
    def __init__(self, own: RobustConfig, post: DecideConfig) -> None:
        self.store = ArrayStore()
        self.own = RobustBank(own, self.store, prefix="own_")
        self.post = DecideBank(post, self.store, prefix="post_")
        self.slot: dict[int, int] = {}
        self.rank: list[int] = []
        self.host: list[str] = []
        self.gpu: list[int] = []  # -1: unknown

    def columns(self) -> list[str]:
        return self.own.columns() + self.post.columns()

    def slots(self, ranks: IntArray, hosts: Sequence[str], gpus: IntArray) -> IntArray:
        """The slot of each rank (-1 past MAX_RANKS), new ranks added; a rank's host and GPU follow its rows."""
        unique, first, inverse = np.unique(ranks, return_index=True, return_inverse=True)
        lut = np.empty(unique.size, dtype=np.intp)
        for i, (rank, at) in enumerate(zip(unique.tolist(), first.tolist(), strict=True)):
            slot = self.slot.get(rank)
            if slot is None and len(self.rank) < MAX_RANKS:
                slot = self.slot[rank] = len(self.rank)
                self.rank.append(rank)
                self.host.append("")
                self.gpu.append(-1)
                if len(self.rank) > self.store.capacity:
                    self.store.ensure(max(16, 2 * len(self.rank)))
            if slot is not None:
                self.host[slot], self.gpu[slot] = hosts[at], int(gpus[at])
            lut[i] = -1 if slot is None else slot
        return lut[inverse]

    def dump(self) -> dict[str, Any]:
        n = len(self.rank)
        return {
            "rank": list(self.rank),
            "host": list(self.host),
            "gpu": list(self.gpu),
            "cols": {c: np.ascontiguousarray(self.store.col(c)[:n]).tobytes() for c in self.columns()},
        }

    def load(self, raw: Mapping[str, Any]) -> None:
        for rank, host, gpu in zip(raw["rank"], raw["host"], raw["gpu"], strict=True):
            self.slots(np.array([int(rank)]), [str(host)], np.array([int(gpu)]))
        n = len(self.rank)
        for name, data in raw["cols"].items():
            if self.store.has(name):
                values = np.frombuffer(data, dtype=self.store.col(name).dtype)
                if values.size == n:
                    self.store.col(name)[:n] = values

    def load_scalars(self, rows: Sequence[Sequence[Any]]) -> None:
        """Ranks as snapshots before the column form wrote them: ``[rank, host, gpu, RobustStat, PostRule]``."""
        for rank, host, gpu, stat, post in rows:
            slot = int(self.slots(np.array([int(rank)]), [str(host)], np.array([-1 if gpu is None else int(gpu)]))[0])
            if slot < 0:
                continue
            for key, value in zip(("n", "mean", "mad", "run", "shift"), stat, strict=False):
                self.store.col(f"own_{key}")[slot] = value
            for key, value in zip(("hist", "active", "below", "quiet"), post, strict=False):
                self.store.col(f"post_{key}")[slot] = value
