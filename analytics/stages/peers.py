"""The live ``peers`` stage: each GPU against the same metric on the other GPUs of its node.

A per-series baseline (``zscore``) asks "is this GPU unlike its own past?"; this stage asks "is it
unlike its siblings right now?". The siblings share the job, the room and the hour, so a change they
all see (the afternoon, a new job) cancels out, and what is left is the GPU itself: a blocked fan, a
throttling clock, a board drawing less power than seven identical ones.

Per round of the telemetry frame, for the metrics in ``peers.metrics``:

1. Each GPU's relative difference from its siblings' median at that tick, ``(value - median) /
   |median|`` (the median from :func:`~vigil.analytics.models.peers.group_median`, the library's
   peer model). GPUs whose utilisation is far from the node's median are left out of the comparison
   (a node shared by two jobs); fewer than ``min_peers`` GPUs compare nothing.
2. A :class:`~vigil.analytics.models.robust.RobustBank` per series learns the GPU's *usual*
   difference (its place in the chassis) and its spread, and scores the departure from it in robust
   sigmas, the spread floored at ``rel_floor`` of the median; departures beyond the threshold are not
   learnt, so a failing GPU keeps firing.
3. :class:`~vigil.analytics.models.decide.DecideBank` (min hits in window, hysteresis, cool-down)
   decides per series; :class:`~vigil.analytics.stages.rollup.EntityRollup` gives one alert per GPU.

State is in slot columns prefixed ``p_``, snapshotted with the partition like ``zscore``'s.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from vigil.analytics.config import PeersConfig
from vigil.analytics.models.decide import DecideBank
from vigil.analytics.models.peers import group_median
from vigil.analytics.models.robust import RobustBank, RobustConfig
from vigil.analytics.stages.base import detection, each_round
from vigil.analytics.stages.rollup import EntityRollup, EntityView
from vigil.analytics.stages.siblings import SiblingIndex
from vigil.analytics.stages.slots import Frame, IntArray, SlotTable

from vigil.catalog import GPU_UTILIZATION
from vigil.events import Decision, Detection

FloatArray = npt.NDArray[np.float64]
MODEL = "peer_gpu"  # the library model whose deviation this stage runs (named in every reason)
ACTION = "compare the GPU with its node siblings: fan and airflow for heat, throttle reasons for clocks, power cabling"


class PeersStage:
    name = "peers"

    def __init__(self, config: PeersConfig, slots: SlotTable) -> None:
        self.config, self.table = config, slots
        self.siblings = SiblingIndex(slots)
        self.offset = RobustBank(
            RobustConfig(
                alpha=config.alpha,
                threshold=config.threshold,
                warmup=config.warmup,
                rel_floor=0.0,
                abs_floor=config.rel_floor,  # eight identical clocks: a 1 % step is not 100 sigmas
                shift_after=0,  # a GPU that stays unlike its siblings stays unlike them: keep firing
            ),
            slots,
            prefix="p_off_",
        )
        self.decide = DecideBank(config, slots, prefix="p_")
        for name in ("p_value", "p_median", "p_dev"):  # the last comparison, for the reason
            slots.add_column(name, np.float64, np.nan)
        self.rollup = EntityRollup(slots, "p_active")
        self._metric_ids = np.array([slots.metric_id(m) for m in config.metrics], dtype=np.intp)
        self._util_id = slots.metric_id(GPU_UTILIZATION)

    def columns(self) -> list[str]:
        return [*self.offset.columns(), *self.decide.columns(), "p_value", "p_median", "p_dev"]

    def rebuild(self) -> None:
        self.rollup.rebuild()

    def observe_frame(self, frame: Frame) -> list[Detection]:
        return each_round(frame, self._round)

    def _round(self, frame: Frame, lo: int, hi: int) -> list[Detection]:
        t = self.table
        slots = frame.slots[lo:hi]
        self.siblings.refresh()
        metric, ent = t.col("metric")[slots], t.col("entity")[slots]
        gpu = self.siblings.is_gpu[ent]
        watched = np.flatnonzero(gpu & np.isin(metric, self._metric_ids))
        if not watched.size:
            return []
        values = frame.values[lo:hi]
        compare = values[watched].copy()
        compare[self._off_load(ent, metric, values, gpu)[ent[watched]]] = np.nan
        sel = slots[watched]
        med, count = group_median(self.siblings.groups(sel), compare)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = (compare - med) / np.maximum(np.abs(med), self.config.abs_floor)
        valid = np.isfinite(rel) & (count >= self.config.min_peers)
        t.col("p_value")[sel] = np.where(valid, compare, t.col("p_value")[sel])
        t.col("p_median")[sel] = np.where(valid, med, t.col("p_median")[sel])
        t.col("p_dev")[sel] = np.where(valid, rel, t.col("p_dev")[sel])
        score = self.offset.process(sel, np.where(valid, rel, np.nan))
        ts = frame.ts[lo:hi][watched]
        fire, resolve = self.decide.update(sel, score, ts, valid)
        if not (fire.any() or resolve.any()):
            return []
        changed = fire | resolve
        transitions = self.rollup.update(sel[fire], sel[resolve], sel[changed], ts[changed])
        return [self._emit(eid, decision, when) for eid, decision, when in transitions]

    def _off_load(
        self, ent: IntArray, metric: IntArray, values: FloatArray, gpu: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """Per entity: True for a GPU whose utilisation this round is far from its node's median."""
        far = np.zeros(len(self.table.entities), dtype=bool)
        util = np.flatnonzero(gpu & (metric == self._util_id))
        if util.size:
            hosts = self.siblings.host_of[ent[util]]
            med, count = group_median(hosts, values[util])
            with np.errstate(invalid="ignore"):
                far[ent[util]] = (count >= self.config.min_peers) & (
                    np.abs(values[util] - med) > self.config.busy_tolerance
                )
        return far

    def _emit(self, eid: int, decision: Decision, ts: float) -> Detection:
        t = self.table
        members = self.rollup.members(eid)
        view = EntityView.of(t, self.decide, members[np.isin(t.col("metric")[members], self._metric_ids)])
        top, score = view.top, float(self.decide.col("last")[view.top])
        series, value, median = t.series_of(top), float(t.col("p_value")[top]), float(t.col("p_median")[top])
        entity = t.entities[eid]
        reason = self.decide.reason(top, MODEL, score, series)
        reason.update(
            value=round(value, 3),
            sibling_median=round(median, 3),
            relative_difference=round(float(t.col("p_dev")[top]), 4),  # (value - median) / |median|
            usual_relative_difference=round(float(t.col("p_off_mean")[top]), 4),
            metrics=view.metrics,
            action=ACTION,
        )
        what = f"{entity.host} GPU {entity.gpu_index}"
        return detection(
            self.name,
            {"alertname": "GpuUnlikeSiblings", **entity.labels()},
            decision,
            ts,
            score=abs(score),
            severity="warning",
            reason=reason,
            since=view.since if np.isfinite(view.since) else ts,
            summary=f"{what}: {series} {value:.4g} against a sibling median of {median:.4g}"
            if decision == "firing"
            else f"{what}: back in line with its siblings",
        )
