"""Telemetry truthfulness on the live stream: missing GPUs, stale, frozen and silently-zero series.

Per slot it keeps the last sample time and an EWMA of the gaps (stale), the frozen-run state and
a count of consecutive silently-zero readings; the checks are the vectorised functions of
``vigil.analytics.models.truthfulness``. Time is event time: the newest sample timestamp of the
fleet, so a consumer that lags or replays a backlog never takes its own delay for silence; a host
that stops while the others go on reporting is caught.

Alerts, one per entity and kind:

- ``GpuMissing`` (critical): every series of a GPU is stale while its host still reports (a GPU
  that fell off the bus, XID 79, disappears from the exporter's output);
- ``HostTelemetryStale``: every series of a host is stale (agent or host down);
- ``TelemetryStale``: some series of a GPU or host are stale, the rest report (a collector source
  failing);
- ``TelemetryFrozen``: a series repeats one value far longer than its history makes plausible;
- ``GpuSilentZero``: a GPU reads ~0 utilisation or power while its siblings are busy.

A series silent for ``forget_after`` is dropped (its alerts resolve): a decommissioned host is not
a page forever.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field
from vigil.analytics.detectors.base import detection
from vigil.analytics.models import truthfulness as tf
from vigil.analytics.models.peers import SiblingIndex
from vigil.analytics.slots import Frame, IntArray, SlotTable

from vigil.catalog import GPU_POWER, GPU_UTILIZATION
from vigil.config import Duration, FrozenModel
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
}


class TruthfulnessConfig(FrozenModel):
    stale_k: Annotated[float, Field(gt=1)] = 5.0  # expected intervals without a sample
    min_interval: Duration = 1.0  # floor of the expected interval
    default_interval: Duration = 15.0  # expected interval of a series seen only once
    forget_after: Duration = 3600.0
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    frozen_min_run: Annotated[int, Field(ge=2)] = 10
    frozen_evidence: Annotated[float, Field(gt=0)] = 9.0  # -log10 chance of the run
    frozen_warmup: Annotated[int, Field(ge=2)] = 30
    # metric -> (reads zero at or below, siblings busy at or above the median)
    zero_metrics: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {GPU_UTILIZATION: (0.01, 0.5), GPU_POWER: (1.0, 50.0)}
    )
    zero_persist: Annotated[int, Field(ge=1)] = 3


class TruthfulnessDetector:
    name = "truthfulness"

    def __init__(self, config: TruthfulnessConfig, slots: SlotTable) -> None:
        self.config, self.table = config, slots
        self.siblings = SiblingIndex(slots)
        for col, (dtype, fill) in COLUMNS.items():
            slots.add_column(col, dtype, fill)
        self._zero_ids = {slots.metric_id(m): v for m, v in config.zero_metrics.items()}
        self.now = -np.inf
        self.active = np.zeros((0, len(KINDS)), dtype=bool)  # per entity, what has been announced
        self.host_active = np.zeros(0, dtype=bool)  # per host id of the sibling index

    def columns(self) -> list[str]:
        return list(COLUMNS)

    def rebuild(self) -> None:
        """Announced state = what the restored columns say now, so a restart does not page again."""
        if np.isfinite(self.table.col("tr_last")[: self.table.size]).any():
            self.now = max(self.now, float(np.nanmax(self.table.col("tr_last")[: self.table.size])))
        self.active, self.host_active, _ = self._derive()

    # -- per round
    def observe_frame(self, frame: Frame) -> list[Detection]:
        if frame.size == 0:
            return []
        for lo, hi in frame.rounds:
            self._round(frame, lo, hi)
        self.now = max(self.now, float(frame.ts.max()))
        return self._transitions()

    def _round(self, frame: Frame, lo: int, hi: int) -> None:
        c, t = self.config, self.table
        slots, ts, x = frame.slots[lo:hi], frame.ts[lo:hi], frame.values[lo:hi]
        gap, last = tf.gap_step(t.col("tr_gap")[slots], t.col("tr_last")[slots], ts, c.alpha)
        t.col("tr_gap")[slots], t.col("tr_last")[slots] = gap, last
        cols = [t.col(n)[slots] for n in ("tr_prev", "tr_run", "tr_rate", "tr_seen")]
        prev, run, rate, seen = tf.frozen_step(cols[0], cols[1], cols[2], cols[3], x, c.alpha)
        t.col("tr_prev")[slots], t.col("tr_run")[slots], t.col("tr_rate")[slots], t.col("tr_seen")[slots] = (
            prev,
            run,
            rate,
            seen,
        )
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
    def _slot_flags(self) -> tuple[IntArray, BoolArray, BoolArray, BoolArray, BoolArray]:
        """(slots in use, stale, frozen, zero, live) over the whole table at event time ``now``."""
        c, t = self.config, self.table
        n = t.size
        last = t.col("tr_last")[:n]
        forget = np.isfinite(last) & (self.now - last > c.forget_after)
        if forget.any():
            for col, (_, fill) in COLUMNS.items():
                t.col(col)[:n][forget] = fill
        live = np.isfinite(last) & (t.col("partition")[:n] >= 0)
        stale = live & tf.stale(last, t.col("tr_gap")[:n], self.now, c.stale_k, c.min_interval, c.default_interval)
        evidence = tf.frozen_evidence(t.col("tr_run")[:n], t.col("tr_rate")[:n])
        frozen = (
            live
            & ~stale
            & (t.col("tr_seen")[:n] >= c.frozen_warmup)
            & (t.col("tr_run")[:n] >= c.frozen_min_run)
            & (evidence >= c.frozen_evidence)
        )
        zero = live & ~stale & (t.col("tr_zero")[:n] >= c.zero_persist)
        return np.arange(n), stale, frozen, zero, live

    def _derive(self) -> tuple[npt.NDArray[np.bool_], BoolArray, BoolArray]:
        """(per entity x kind, per host stale, per slot stale) from the slot columns."""
        self.siblings.refresh()
        t = self.table
        slots, stale, frozen, zero, live = self._slot_flags()
        n_ent = len(t.entities)
        ent = t.col("entity")[slots]
        host_of = self.siblings.host_of
        n_hosts = int(host_of.max(initial=-1)) + 1
        per = np.zeros((n_ent, len(KINDS)), dtype=bool)
        n_live = np.bincount(ent[live], minlength=n_ent)
        n_stale = np.bincount(ent[stale], minlength=n_ent)
        host_fresh = np.bincount(host_of[ent[live & ~stale]], minlength=n_hosts) > 0
        host_live = np.bincount(host_of[ent[live]], minlength=n_hosts) > 0
        all_stale = (n_live > 0) & (n_stale == n_live)
        per[:, MISSING] = all_stale & self.siblings.is_gpu & host_fresh[host_of]
        per[:, STALE] = (n_stale > 0) & ~per[:, MISSING] & host_fresh[host_of]
        per[:, FROZEN] = np.bincount(ent[frozen], minlength=n_ent) > 0
        per[:, ZERO] = np.bincount(ent[zero], minlength=n_ent) > 0
        return per, host_live & ~host_fresh, stale

    def _transitions(self) -> list[Detection]:
        per, host_stale, stale = self._derive()
        old = np.zeros_like(per)
        old[: len(self.active)] = self.active[: len(per)]
        old_host = np.zeros_like(host_stale)
        old_host[: len(self.host_active)] = self.host_active[: len(host_stale)]
        self.active, self.host_active = per, host_stale
        out = [
            self._emit(int(e), int(k), "firing" if per[e, k] else "resolved", stale)
            for e, k in zip(*np.nonzero(per != old), strict=True)
        ]
        hosts = {
            h: (e.cluster, e.host) for e, h in zip(self.table.entities, self.siblings.host_of.tolist(), strict=True)
        }
        for h in np.flatnonzero(host_stale != old_host).tolist():
            out.append(self._emit_host(hosts[h], "firing" if host_stale[h] else "resolved"))
        return out

    def _emit(self, eid: int, kind: int, decision: Decision, stale: BoolArray) -> Detection:
        t = self.table
        entity = t.entities[eid]
        alertname, severity, action = KINDS[kind]
        members = np.flatnonzero(t.col("entity")[: t.size] == eid)
        what = f"{entity.host} GPU {entity.gpu_index}" if entity.gpu_index else entity.host
        last = t.col("tr_last")[members]
        silent = round(self.now - float(np.nanmax(last)), 3) if np.isfinite(last).any() else 0.0
        reason: dict[str, Any] = {"action": action if decision == "firing" else "none"}
        if decision == "firing":
            reason.update(self._evidence(kind, members, stale, silent))
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
            self.now,
            score=float(reason.get("score", 1.0)),
            severity=severity,
            reason=reason,
            summary=summaries[kind] if decision == "firing" else f"{what}: {alertname} cleared",
        )

    def _evidence(self, kind: int, members: IntArray, stale: BoolArray, silent: float) -> dict[str, Any]:
        """The machine-readable part of a firing reason: which series, and the figures behind it."""
        t, c = self.table, self.config
        if kind == MISSING:
            return {"silent_s": silent, "n_series": len(members), "score": silent}
        if kind == STALE:
            hit = members[stale[members]]
            since = {t.series_of(s): round(self.now - float(t.col("tr_last")[s]), 3) for s in hit[:10].tolist()}
            return {"series": list(since), "silent_s": since, "score": max(since.values(), default=0.0)}
        if kind == FROZEN:
            runs = t.col("tr_run")[members]
            hit = members[runs >= c.frozen_min_run]
            ev = tf.frozen_evidence(t.col("tr_run")[hit], t.col("tr_rate")[hit])
            series = {
                t.series_of(s): {"value": float(t.col("tr_prev")[s]), "run": int(t.col("tr_run")[s])}
                for s in hit[:10].tolist()
            }
            return {"series": list(series), "runs": series, "score": float(ev.max(initial=0.0))}
        hit = members[t.col("tr_zero")[members] >= c.zero_persist]
        values = {t.series_of(s): float(t.col("tr_prev")[s]) for s in hit.tolist()}
        return {"series": list(values), "values": values, "score": float(len(values))}

    def _emit_host(self, host: tuple[str, str], decision: Decision) -> Detection:
        cluster, name = host
        return detection(
            self.name,
            {"alertname": "HostTelemetryStale", "cluster": cluster, "host": name},
            decision,
            self.now,
            score=1.0 if decision == "firing" else 0.0,
            severity="warning",
            reason={"action": "check the agent and the host" if decision == "firing" else "none"},
            summary=f"{name}: no telemetry" if decision == "firing" else f"{name}: telemetry resumed",
        )
