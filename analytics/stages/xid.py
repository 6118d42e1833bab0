"""XID classification: a driver XID on a GPU becomes one alert, resolved after a quiet period.

Alertnames: ``GpuXidFatal`` (the catalog says the GPU or node is unusable until acted on) and
``GpuXidError`` (application-level or informational), with the code in an ``xid`` label. Two names
rather than one per code because alerting's identity is (cluster, host, gpu_index): a GPU that
logs 13, 31 and 43 in a row is one application incident, not three pages, while a fatal XID on
the same GPU is a different thing to do (reset or drain) and must not hide behind it. dcgm-exporter
keeps the last XID as a gauge that never resets; here the alert resolves once the GPU has been
quiet for ``quiet_period`` seconds of the injected clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vigil.analytics.config import XidConfig
from vigil.analytics.stages.base import detection

from vigil.events import Detection, LogEvent
from vigil.xid import XidCatalog, XidEntry

FALLEN_OFF_BUS = 79  # kernels log "fallen off the bus" without an XID line on some drivers


@dataclass(slots=True)
class XidState:
    partition: int
    cluster: str
    host: str
    gpu_index: str
    alertname: str
    code: int
    since: float  # event time of the first XID of this episode
    last_seen: float  # event time of the latest XID, for the quiet period


class XidStage:
    name = "xid"
    stream = "logs"

    def __init__(self, config: XidConfig, catalog: XidCatalog) -> None:
        self.config = config
        self.catalog = catalog
        self.active: dict[tuple[str, str, str, str], XidState] = {}

    def observe_event(self, event: Any, partition: int, now: float) -> list[Detection]:
        if not isinstance(event, LogEvent):
            return []
        code = event.code if event.kind == "xid" else FALLEN_OFF_BUS if event.kind == "fallen_off_bus" else None
        if code is None:
            return []
        entry = self.catalog.classify(code)
        alertname = "GpuXidFatal" if entry.fatal else "GpuXidError"
        gpu = "" if event.gpu_index is None else str(event.gpu_index)
        key = (event.cluster, event.host, gpu, alertname)
        state = self.active.get(key)
        if state is not None:
            state.last_seen = max(state.last_seen, now)
            return []  # still the same episode: alerting already has it
        state = XidState(partition, event.cluster, event.host, gpu, alertname, code, event.ts, now)
        self.active[key] = state
        return [self._emit(state, entry, "firing", event.ts, event.raw)]

    def tick(self, now: float) -> list[Detection]:
        quiet = [k for k, s in self.active.items() if now - s.last_seen >= self.config.quiet_period]
        out = []
        for key in quiet:
            state = self.active.pop(key)
            out.append(self._emit(state, self.catalog.classify(state.code), "resolved", now, ""))
        return out

    def _emit(self, state: XidState, entry: XidEntry, decision: str, ts: float, raw: str) -> Detection:
        labels = {"alertname": state.alertname, "cluster": state.cluster, "host": state.host, "xid": str(entry.code)}
        if state.gpu_index:
            labels["gpu_index"] = state.gpu_index
        where = f"{state.host} GPU {state.gpu_index or '?'}"
        return detection(
            self.name,
            labels,
            "firing" if decision == "firing" else "resolved",
            ts,
            score=float(entry.code),
            severity=entry.severity,
            reason={
                "xid": entry.code,
                "name": entry.name,
                "fatal": entry.fatal,
                "action": entry.action,
                "meaning": entry.meaning,
                "raw": raw[:500],
            },
            since=state.since,
            summary=f"XID {entry.code} ({entry.name}) on {where}"
            if decision == "firing"
            else f"no XID on {where} for {self.config.quiet_period:g}s",
        )

    # -- state per partition
    def snapshot(self, partition: int) -> dict[str, Any]:
        rows = [
            [s.cluster, s.host, s.gpu_index, s.alertname, s.code, s.since, s.last_seen]
            for s in self.active.values()
            if s.partition == partition
        ]
        return {"active": rows}

    def restore(self, partition: int, blob: Mapping[str, Any]) -> None:
        for cluster, host, gpu, alertname, code, since, last_seen in blob.get("active", []):
            self.active[(cluster, host, gpu, alertname)] = XidState(
                partition, cluster, host, gpu, alertname, int(code), float(since), float(last_seen)
            )

    def drop(self, partition: int) -> None:
        self.active = {k: s for k, s in self.active.items() if s.partition != partition}
