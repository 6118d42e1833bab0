"""The live ``zscore`` stage: the library's robust z bank and decision layer over every series,
decided per entity (one alert per failing GPU or host).

Per series (a slot of the SlotTable): :class:`~vigil.analytics.models.robust.RobustBank` scores
and learns the value (counters: their per-second rate), re-anchoring after a lasting level shift;
:class:`~vigil.analytics.models.decide.DecideBank` applies min-hits-in-window, hysteresis and
cool-down. Both keep their state in slot columns prefixed ``z_`` (the names the snapshots always
had), so a restarted process resumes warm. An entity fires while any of its series does, so the
on-call gets one alert per GPU, with the deviating series and the top one in the reason.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from vigil.analytics.config import ZScoreConfig
from vigil.analytics.models.decide import DecideBank
from vigil.analytics.models.robust import RobustBank
from vigil.analytics.stages.base import detection, each_round
from vigil.analytics.stages.rollup import EntityRollup, EntityView
from vigil.analytics.stages.slots import Frame, SlotTable

from vigil.events import Decision, Detection

MODEL = "robust_z"  # the library model this stage runs (named in every reason)


class ZScoreStage:
    name = "zscore"

    def __init__(self, config: ZScoreConfig, slots: SlotTable) -> None:
        self.config = config
        self.table = slots
        self.model = RobustBank(config, slots, prefix="z_")
        self.decide = DecideBank(config, slots, prefix="z_")
        self.rollup = EntityRollup(slots, "z_active")

    def columns(self) -> list[str]:
        return self.model.columns() + self.decide.columns()

    def rebuild(self) -> None:
        self.rollup.rebuild()

    def features(self, frame: Frame, lo: int, hi: int) -> npt.NDArray[np.float64]:
        slots = frame.slots[lo:hi]
        return np.where(self.table.col("counter")[slots], frame.rates[lo:hi], frame.values[lo:hi])

    def observe_frame(self, frame: Frame) -> list[Detection]:
        return each_round(frame, self._round)

    def _round(self, frame: Frame, lo: int, hi: int) -> list[Detection]:
        slots = frame.slots[lo:hi]
        y = self.features(frame, lo, hi)
        z = self.model.process(slots, y)
        ts = frame.ts[lo:hi]
        fire, resolve = self.decide.update(slots, z, ts, np.isfinite(y))
        if not (fire.any() or resolve.any()):
            return []
        changed = fire | resolve
        transitions = self.rollup.update(slots[fire], slots[resolve], slots[changed], ts[changed])
        return [self._emit(eid, decision, when) for eid, decision, when in transitions]

    def _emit(self, eid: int, decision: Decision, ts: float) -> Detection:
        t = self.table
        view = EntityView.of(t, self.decide, self.rollup.members(eid))
        entity = t.entities[eid]
        gpu = bool(entity.gpu_index)
        what = f"{entity.host} GPU {entity.gpu_index}" if gpu else entity.host
        reason = self.decide.reason(view.top, MODEL, float(self.decide.col("last")[view.top]), t.series_of(view.top))
        reason.update(
            metrics=view.metrics,
            action="inspect the GPU; drain it if the deviation persists" if gpu else "inspect the host",
        )
        return detection(
            self.name,
            {"alertname": "GpuTelemetryAnomaly" if gpu else "HostTelemetryAnomaly", **entity.labels()},
            decision,
            ts,
            score=max((abs(v) for v in view.metrics.values()), default=0.0),
            severity="warning",
            reason=reason,
            since=view.since if np.isfinite(view.since) else ts,
            summary=f"{what}: {len(view.metrics)} series deviate from their baseline"
            if decision == "firing"
            else f"{what}: telemetry back within its baseline",
        )
