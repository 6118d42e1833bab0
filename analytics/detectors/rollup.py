"""Series decisions rolled up to entities: a GPU or host fires while any of its series fires.

The on-call gets one alert per failing GPU, not one per deviating series; the vectorised stages
(``zscore``, ``peers``) decide per series in slot columns and turn the transitions of those
decisions into entity transitions here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from vigil.analytics.slots import IntArray, SlotTable

from vigil.events import Decision


class EntityRollup:
    """Count of active series per entity, from a stage's ``active`` slot column."""

    def __init__(self, table: SlotTable, active_column: str) -> None:
        self.table, self.active_column = table, active_column
        self.count = np.zeros(0, dtype=np.int32)

    def rebuild(self) -> None:
        """Recount after slots were restored or released."""
        t = self.table
        active = t.col(self.active_column)[: t.size]
        self.count = np.bincount(t.col("entity")[: t.size][active], minlength=len(t.entities)).astype(np.int32)

    def grow(self) -> None:
        if len(self.count) < len(self.table.entities):
            self.count = np.pad(self.count, (0, len(self.table.entities) - len(self.count)))

    def update(
        self, fired: IntArray, resolved: IntArray, changed: IntArray, ts: npt.NDArray[np.float64]
    ) -> list[tuple[int, Decision, float]]:
        """Series transitions -> (entity id, decision, event time) for entities whose state changed.

        ``changed`` is ``fired`` and ``resolved`` together in round order, ``ts`` the sample time of each.
        """
        self.grow()
        ent = self.table.col("entity")
        before = self.count.copy()
        np.add.at(self.count, ent[fired], 1)
        np.subtract.at(self.count, ent[resolved], 1)
        when = dict(zip(ent[changed].tolist(), ts.tolist(), strict=True))
        out: list[tuple[int, Decision, float]] = []
        for eid in np.unique(ent[changed]).tolist():
            if before[eid] == 0 and self.count[eid] > 0:
                out.append((eid, "firing", when[eid]))
            elif before[eid] > 0 and self.count[eid] == 0:
                out.append((eid, "resolved", when[eid]))
        return out

    def members(self, eid: int) -> IntArray:
        """Every slot of the entity."""
        t = self.table
        return np.flatnonzero(t.col("entity")[: t.size] == eid)
