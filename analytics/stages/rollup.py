"""Series decisions rolled up to entities: a GPU or host fires while any of its series fires.

The on-call gets one alert per failing GPU, not one per deviating series; the vectorised stages
(``zscore``, ``peers``) decide per series in slot columns and turn the transitions of those
decisions into entity transitions here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from vigil.analytics.models.decide import DecideBank
from vigil.analytics.stages.slots import IntArray, SlotTable

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


@dataclass(frozen=True, slots=True)
class EntityView:
    """What an entity's alert says about its series, read from a stage's decision columns."""

    active: IntArray  # the member slots firing now (none once the entity resolves)
    top: int  # the member that deviates (or deviated) most
    metrics: dict[str, float]  # series -> last calibrated score, for the firing members
    since: float  # earliest firing time among the members; NaN if none

    @classmethod
    def of(cls, table: SlotTable, decide: DecideBank, members: IntArray) -> EntityView:
        last = decide.col("last")
        active = members[decide.col("active")[members]]
        pool = active if active.size else members
        top = int(pool[np.argmax(np.abs(last[pool]))])
        since = decide.col("since")[members]
        return cls(
            active=active,
            top=top,
            metrics={table.series_of(s): round(float(last[s]), 3) for s in active.tolist()},
            since=float(np.nanmin(since)) if np.isfinite(since).any() else float("nan"),
        )
