"""Sibling groups on the live telemetry frame: each GPU against the same metric on the other GPUs of its node.

The comparison itself is the library's (:func:`~vigil.analytics.models.peers.peer_deviation`); this
module maps the slot table's entities to those groups, for the ``peers`` and ``truthfulness`` stages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vigil.analytics.models.base import FloatArray
from vigil.analytics.models.peers import peer_deviation
from vigil.analytics.stages.slots import Frame, IntArray, SlotTable


class SiblingIndex:
    """Group ids of slots for sibling comparison: one group per (host, metric) over the host's GPUs.

    Entities only ever get appended to the slot table, so the per-entity arrays are extended, not
    rebuilt, when new ones appeared since the last call.
    """

    def __init__(self, table: SlotTable) -> None:
        self.table = table
        self._hosts: dict[tuple[str, str], int] = {}  # (cluster, host) -> host id, in order of appearance
        self.host_of = np.zeros(0, dtype=np.intp)
        self.is_gpu = np.zeros(0, dtype=bool)

    def refresh(self) -> None:
        new = self.table.entities[len(self.host_of) :]
        if new:
            ids = [self._hosts.setdefault((e.cluster, e.host), len(self._hosts)) for e in new]
            self.host_of = np.concatenate([self.host_of, np.array(ids, dtype=np.intp)])
            self.is_gpu = np.concatenate([self.is_gpu, np.array([bool(e.gpu_index) for e in new], dtype=bool)])

    def host_key(self, host_id: int) -> tuple[str, str]:
        return list(self._hosts)[host_id]

    def groups(self, slots: IntArray) -> IntArray:
        """Group id per slot (-1 for host series)."""
        self.refresh()
        ents = self.table.col("entity")[slots]
        gid = self.host_of[ents] * max(len(self.table.metrics), 1) + self.table.col("metric")[slots]
        return np.where(self.is_gpu[ents], gid, -1)


def frame_sibling_deviation(
    index: SiblingIndex, frame: Frame, lo: int, hi: int, *, counters: bool = False, **kw: Any
) -> tuple[IntArray, FloatArray, FloatArray]:
    """(slots, deviation, sibling median) for round ``lo:hi`` of a frame: each GPU gauge against the
    same metric on the other GPUs of its host at that tick. Counters are left out unless asked for
    (then compared on their rate): rare-event counters (ECC) sit at rate 0 on every sibling, so one
    healthy correctable error would be an unbounded deviation; threshold rules judge those."""
    slots = frame.slots[lo:hi]
    is_counter = index.table.col("counter")[slots]
    values = np.where(is_counter, frame.rates[lo:hi] if counters else np.nan, frame.values[lo:hi])
    group = index.groups(slots)
    values = np.where(group >= 0, values, np.nan)
    z, med = peer_deviation(group, values, **kw)
    return slots, z, med
