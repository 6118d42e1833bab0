"""Static threshold rules with ``for`` hold-down and ``keep_firing_for``, vectorised per metric.

Prometheus semantics: a rule's condition must hold continuously for ``for`` seconds (sample time)
before it fires, and a firing rule stays up until the condition has been false for
``keep_firing_for``. Counter rules (``rate: true``) compare the per-second rate between
consecutive samples, so a counter's absolute value (which only grows) never trips a rule.
"""

from __future__ import annotations

import numpy as np
from vigil.analytics.config import ThresholdRule
from vigil.analytics.stages.base import detection
from vigil.analytics.stages.slots import Frame, IntArray, SlotTable

from vigil.events import Decision, Detection


class ThresholdStage:
    name = "threshold"

    def __init__(self, rules: list[ThresholdRule], slots: SlotTable) -> None:
        self.rules = list(rules)
        self.table = slots
        self._metric_ids = [slots.metric_id(r.metric) for r in self.rules]
        for i in range(len(self.rules)):
            slots.add_column(f"th{i}_pending", np.float64, np.nan)  # when the condition became true
            slots.add_column(f"th{i}_last_true", np.float64, np.nan)
            slots.add_column(f"th{i}_firing", np.bool_, False)

    def columns(self) -> list[str]:
        return [f"th{i}_{c}" for i in range(len(self.rules)) for c in ("pending", "last_true", "firing")]

    def rebuild(self) -> None:
        return  # all state is per slot

    def observe_frame(self, frame: Frame) -> list[Detection]:
        out: list[Detection] = []
        metric = self.table.col("metric")[frame.slots]
        for i, rule in enumerate(self.rules):
            idx = np.flatnonzero(metric == self._metric_ids[i])
            if not idx.size:
                continue
            cuts = np.searchsorted(idx, [hi for _, hi in frame.rounds]).tolist()
            for lo, hi in zip([0, *cuts[:-1]], cuts, strict=True):
                if hi > lo:
                    out.extend(self._round(i, rule, frame, idx[lo:hi]))
        return out

    def _round(self, i: int, rule: ThresholdRule, frame: Frame, sel: IntArray) -> list[Detection]:
        t = self.table
        slots, ts = frame.slots[sel], frame.ts[sel]
        x = frame.rates[sel] if rule.rate else frame.values[sel]
        valid = np.isfinite(x)  # a first counter sample has no rate yet: no evidence either way
        cond = valid & ((x > rule.value) if rule.op == ">" else (x < rule.value))
        pending, last_true = t.col(f"th{i}_pending"), t.col(f"th{i}_last_true")
        firing = t.col(f"th{i}_firing")[slots]
        since = np.where(cond, np.where(np.isnan(pending[slots]), ts, pending[slots]), np.nan)
        pending[slots] = np.where(valid, since, pending[slots])
        last_true[slots] = np.where(cond, ts, last_true[slots])
        fire = cond & ~firing & (ts - since >= rule.for_)
        quiet_for = ts - last_true[slots]
        resolve = valid & ~cond & firing & ~(quiet_for < rule.keep_firing_for)
        if not (fire.any() or resolve.any()):
            return []
        t.col(f"th{i}_firing")[slots] = (firing | fire) & ~resolve
        out = [
            self._emit(rule, int(s), "firing", float(w), float(v), float(p))
            for s, w, v, p in zip(slots[fire], ts[fire], x[fire], since[fire], strict=True)
        ]
        out += [
            self._emit(rule, int(s), "resolved", float(w), float(v), float(w))
            for s, w, v in zip(slots[resolve], ts[resolve], x[resolve], strict=True)
        ]
        return out

    def _emit(
        self, rule: ThresholdRule, slot: int, decision: Decision, ts: float, value: float, since: float
    ) -> Detection:
        entity = self.table.entities[int(self.table.col("entity")[slot])]
        what = "rate" if rule.rate else "value"
        return detection(
            self.name,
            {"alertname": rule.name, **entity.labels()},
            decision,
            ts,
            score=value,
            severity=rule.severity,
            reason={
                "rule": rule.name,
                "metric": rule.metric,
                "observed": value,
                "rate": rule.rate,
                "op": rule.op,
                "threshold": rule.value,
                "for_s": rule.for_,
                "action": rule.action,
            },
            since=since,
            summary=f"{rule.metric} {what} {value:.4g} {rule.op} {rule.value:g} on {self.table.series_of(slot)}"
            if decision == "firing"
            else f"{rule.metric} back within {rule.op} {rule.value:g}",
        )
