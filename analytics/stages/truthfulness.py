"""Telemetry truthfulness on the live stream: missing GPUs, stale, frozen and silently-zero series.

Per slot it keeps the last sample time and an EWMA of the gaps (stale), the frozen-run state and
a count of consecutive silently-zero readings; the checks are the vectorised functions of
``vigil.analytics.models.truthfulness``. Time is event time per partition: the newest sample
timestamp consumed from the partition a series arrives on. Records within a partition are in
order, so a consumer that lags, replays a backlog or reads one partition ahead of another never
takes that skew for silence; a host that stops while the other hosts of its partition go on is
caught. (A host alone on its partition that stops is not: that needs the wall clock, and the
``up``-style check of the agent's own heartbeat is the right tool.)

Alerts, one per entity and kind:

- ``GpuMissing`` (critical): every series of a GPU is stale while its host still reports (a GPU
  that fell off the bus, XID 79, disappears from the exporter's output);
- ``HostTelemetryStale``: every series of a host is stale (agent or host down);
- ``TelemetryStale``: some series of a GPU or host are stale, the rest report (a collector source
  failing);
- ``TelemetryFrozen``: a gauge repeats one value far longer than its history makes plausible
  (counters are left out: an error counter that climbed during an incident and then stops is
  telling the truth);
- ``GpuSilentZero``: a GPU reads ~0 utilisation or power while its siblings are busy.

A series silent for ``forget_after`` is dropped (its alerts resolve): a decommissioned host is not
a page forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from vigil.analytics.config import TruthfulnessConfig
from vigil.analytics.models import truthfulness as tf
from vigil.analytics.stages.base import detection
from vigil.analytics.stages.siblings import SiblingIndex
from vigil.analytics.stages.slots import Frame, IntArray, SlotTable

from vigil.events import Decision, Detection, Severity

BoolArray = npt.NDArray[np.bool_]
KINDS: tuple[tuple[str, Severity, str], ...] = (
    ("GpuMissing", "critical", "check the GPU is on the bus (nvidia-smi, dmesg for XID 79); drain and reset the node"),
    ("TelemetryStale", "warning", "check the collector source for these series on the host"),
    ("TelemetryFrozen", "warning", "check the exporter (DCGM, NVML) is still sampling; restart it"),
    ("GpuSilentZero", "warning", "the GPU reads idle while its siblings work: check the job and the exporter"),
)
MISSING, STALE, FROZEN, ZERO = range(4)
COLUMNS: dict[str, tuple[Any, Any]] = {  # slot column -> (dtype, fill)
    "tr_last": (np.float64, np.nan),
    "tr_gap": (np.float64, np.nan),
    "tr_prev": (np.float64, np.nan),
    "tr_run": (np.int64, 0),
    "tr_rate": (np.float64, 0.0),
    "tr_seen": (np.int64, 0),
    "tr_zero": (np.int32, 0),
    "tr_back": (np.float64, np.nan),  # when the series last came back after being stale
}


@dataclass(frozen=True, slots=True)
class Flags:
    """Per slot of the table, at the event time of its partition."""

    now: npt.NDArray[np.float64]
    due: npt.NDArray[np.float64]  # when the slot turns (or turned) stale
    live: BoolArray
    stale: BoolArray
    frozen: BoolArray
    zero: BoolArray


class TruthfulnessStage:
    name = "truthfulness"

    def __init__(self, config: TruthfulnessConfig, slots: SlotTable) -> None:
        self.config, self.table = config, slots
        self.siblings = SiblingIndex(slots)
        for col, (dtype, fill) in COLUMNS.items():
            slots.add_column(col, dtype, fill)
        self._zero_ids = {slots.metric_id(m): v for m, v in config.zero_metrics.items()}
        self.clock = np.zeros(0)  # per partition id: newest sample time consumed from it
        self.active = np.zeros((0, len(KINDS)), dtype=bool)  # per entity, what has been announced
        self.host_active = np.zeros(0, dtype=bool)  # per host id of the sibling index

    def columns(self) -> list[str]:
        return list(COLUMNS)

    def rebuild(self) -> None:
        """Clocks and announced state from the restored columns, so a restart does not page again."""
        t = self.table
        last, part = t.col("tr_last")[: t.size], t.col("partition")[: t.size]
        known = np.isfinite(last) & (part >= 0)
        self._advance(part[known], last[known])
        self.active, self.host_active, _, _ = self._derive()

    def _grow_clock(self, partitions: int) -> None:
        if partitions > self.clock.size:
            self.clock = np.concatenate([self.clock, np.full(partitions - self.clock.size, -np.inf)])

    def _advance(self, partitions: IntArray, ts: npt.NDArray[np.float64]) -> None:
        if partitions.size:
            self._grow_clock(int(partitions.max()) + 1)
            np.maximum.at(self.clock, partitions, ts)

    # -- per round
    def observe_frame(self, frame: Frame) -> list[Detection]:
        if frame.size == 0:
            return []
        for lo, hi in frame.rounds:
            self._round(frame, lo, hi)
        self._advance(self.table.col("partition")[frame.slots], frame.ts)
        return self._transitions()

    def _round(self, frame: Frame, lo: int, hi: int) -> None:
        c, t = self.config, self.table
        slots, ts, x = frame.slots[lo:hi], frame.ts[lo:hi], frame.values[lo:hi]
        gap, last = t.col("tr_gap")[slots], t.col("tr_last")[slots]
        back = ts > tf.stale_due(last, gap, c.stale_k, c.min_interval, c.default_interval)
        t.col("tr_back")[slots] = np.where(back, ts, t.col("tr_back")[slots])
        t.col("tr_gap")[slots], t.col("tr_last")[slots] = tf.gap_step(gap, last, ts, c.alpha, ~back)
        names = ("tr_prev", "tr_run", "tr_rate", "tr_seen")
        prev, run, rate, seen = tf.frozen_step(
            t.col("tr_prev")[slots],
            t.col("tr_run")[slots],
            t.col("tr_rate")[slots],
            t.col("tr_seen")[slots],
            x,
            c.alpha,
        )
        for name, value in zip(names, (prev, run, rate, seen), strict=True):
            t.col(name)[slots] = value
        self._zero_round(slots, x)

    def _zero_round(self, slots: IntArray, x: npt.NDArray[np.float64]) -> None:
        metric = self.table.col("metric")[slots]
        watched = np.isin(metric, list(self._zero_ids))
        if not watched.any():
            return
        slots, x, metric = slots[watched], x[watched], metric[watched]
        limits = np.array([self._zero_ids[int(m)] for m in metric]).reshape(-1, 2)
        zero, _ = tf.silent_zero(self.siblings.groups(slots), x, limits[:, 0], limits[:, 1])
        count = self.table.col("tr_zero")
        count[slots] = np.where(zero, count[slots] + 1, np.where(np.isfinite(x), 0, count[slots]))

    # -- per frame: derive the alert state and announce what changed
    def _flags(self) -> Flags:
        c, t = self.config, self.table
        n = t.size
        part = t.col("partition")[:n]
        self._grow_clock(int(part.max(initial=-1)) + 1)  # restored slots may name a partition not seen yet
        now = np.where(part >= 0, self.clock[np.maximum(part, 0)] if self.clock.size else -np.inf, -np.inf)
        last = t.col("tr_last")[:n]
        forget = np.isfinite(last) & (now - last > c.forget_after)
        if forget.any():
            for col, (_, fill) in COLUMNS.items():
                t.col(col)[:n][forget] = fill
        live = np.isfinite(last) & (part >= 0)
        due = tf.stale_due(last, t.col("tr_gap")[:n], c.stale_k, c.min_interval, c.default_interval)
        stale = live & (now > due)
        run = t.col("tr_run")[:n]
        frozen = (
            live
            & ~stale
            & ~t.col("counter")[:n]  # an event counter (ECC) stops moving when the events stop: not a lie
            & (t.col("tr_seen")[:n] >= c.frozen_warmup)
            & (run >= c.frozen_min_run)
            & (tf.frozen_evidence(run, t.col("tr_rate")[:n]) >= c.frozen_evidence)
        )
        zero = live & ~stale & (t.col("tr_zero")[:n] >= c.zero_persist)
        return Flags(now, due, live, stale, frozen, zero)

    def _derive(self) -> tuple[npt.NDArray[np.bool_], BoolArray, Flags, npt.NDArray[np.float64]]:
        """(per entity x kind, per host all-stale, the slot flags, per host time of its latest change)."""
        self.siblings.refresh()
        f = self._flags()
        n_ent = len(self.table.entities)
        ent = self.table.col("entity")[: self.table.size]
        host_of, is_gpu = self.siblings.host_of, self.siblings.is_gpu
        n_hosts = int(host_of.max(initial=-1)) + 1
        n_live = np.bincount(ent[f.live], minlength=n_ent)
        n_stale = np.bincount(ent[f.stale], minlength=n_ent)
        host_fresh = np.bincount(host_of[ent[f.live & ~f.stale]], minlength=n_hosts) > 0
        host_live = np.bincount(host_of[ent[f.live]], minlength=n_hosts) > 0
        # When a host's state changed: its last series went stale, or its newest sample came back.
        host_when = np.full(n_hosts, -np.inf)
        np.maximum.at(
            host_when, host_of[ent[f.live]], np.where(f.stale, f.due, self.table.col("tr_last")[: len(f.due)])[f.live]
        )
        per = np.zeros((n_ent, len(KINDS)), dtype=bool)
        per[:, MISSING] = (n_live > 0) & (n_stale == n_live) & is_gpu & host_fresh[host_of]
        per[:, STALE] = (n_stale > 0) & ~per[:, MISSING] & host_fresh[host_of]
        per[:, FROZEN] = np.bincount(ent[f.frozen], minlength=n_ent) > 0
        per[:, ZERO] = np.bincount(ent[f.zero], minlength=n_ent) > 0
        return per, host_live & ~host_fresh, f, host_when

    def _transitions(self) -> list[Detection]:
        per, host_stale, flags, host_when = self._derive()
        old = np.zeros_like(per)
        old[: len(self.active)] = self.active[: len(per)]
        old_host = np.zeros_like(host_stale)
        old_host[: len(self.host_active)] = self.host_active[: len(host_stale)]
        self.active, self.host_active = per, host_stale
        out = [
            self._emit(int(e), int(k), "firing" if per[e, k] else "resolved", flags)
            for e, k in zip(*np.nonzero(per != old), strict=True)
        ]
        for h in np.flatnonzero(host_stale != old_host).tolist():
            decision: Decision = "firing" if host_stale[h] else "resolved"
            out.append(self._emit_host(self.siblings.host_key(h), decision, float(host_when[h])))
        return out

    def _emit(self, eid: int, kind: int, decision: Decision, flags: Flags) -> Detection:
        t = self.table
        entity = t.entities[eid]
        alertname, severity, action = KINDS[kind]
        members = np.flatnonzero(t.col("entity")[: t.size] == eid)
        what = f"{entity.host} GPU {entity.gpu_index}" if entity.gpu_index else entity.host
        now = float(flags.now[members].max(initial=-np.inf))
        last = t.col("tr_last")[members]
        newest = float(np.nanmax(last)) if np.isfinite(last).any() else now
        silent = round(now - newest, 3)
        when = now  # frozen and zero: decided on the newest samples
        if kind in (MISSING, STALE):  # the moment it went stale, or the first sample back
            went = flags.due[members][flags.stale[members]]
            back = t.col("tr_back")[members]
            came = float(np.nanmax(back)) if np.isfinite(back).any() else now
            when = (float(went.max()) if went.size else now) if decision == "firing" else came
        reason: dict[str, Any] = {"action": action if decision == "firing" else "none"}
        if decision == "firing":
            reason.update(self._evidence(kind, members, flags, silent))
        summaries = {
            MISSING: f"{what}: every series silent for {silent:.0f}s while the host reports",
            STALE: f"{what}: {len(reason.get('series', []))} series stopped reporting",
            FROZEN: f"{what}: series stuck at one value",
            ZERO: f"{what}: reads zero while its siblings are busy",
        }
        return detection(
            self.name,
            {"alertname": alertname, **entity.labels()},
            decision,
            min(when, now),
            score=float(reason.get("score", 0.0)),
            severity=severity,
            reason=reason,
            summary=summaries[kind] if decision == "firing" else f"{what}: {alertname} cleared",
        )

    def _evidence(self, kind: int, members: IntArray, flags: Flags, silent: float) -> dict[str, Any]:
        """The machine-readable part of a firing reason: which series, and the figures behind it."""
        t = self.table
        if kind == MISSING:
            return {"silent_s": silent, "n_series": len(members), "score": silent}
        if kind == STALE:
            hit = members[flags.stale[members]][:10].tolist()
            since = {t.series_of(s): round(float(flags.now[s] - t.col("tr_last")[s]), 3) for s in hit}
            return {"series": list(since), "silent_s": since, "score": max(since.values(), default=0.0)}
        if kind == FROZEN:
            hit = members[flags.frozen[members]][:10]
            evidence = tf.frozen_evidence(t.col("tr_run")[hit], t.col("tr_rate")[hit])
            runs = {
                t.series_of(s): {"value": float(t.col("tr_prev")[s]), "run": int(t.col("tr_run")[s])}
                for s in hit.tolist()
            }
            return {"series": list(runs), "runs": runs, "score": float(evidence.max(initial=0.0))}
        hit = members[flags.zero[members]]
        values = {t.series_of(s): float(t.col("tr_prev")[s]) for s in hit.tolist()}
        return {"series": list(values), "values": values, "score": float(len(values))}

    def _emit_host(self, host: tuple[str, str], decision: Decision, now: float) -> Detection:
        cluster, name = host
        return detection(
            self.name,
            {"alertname": "HostTelemetryStale", "cluster": cluster, "host": name},
            decision,
            now,
            score=1.0 if decision == "firing" else 0.0,
            severity="warning",
            reason={"action": "check the agent and the host" if decision == "firing" else "none"},
            summary=f"{name}: no telemetry" if decision == "firing" else f"{name}: telemetry resumed",
        )
