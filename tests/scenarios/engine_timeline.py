"""A timeline harness for the incident engine, in the style of Alertmanager's acceptance tests: alerts
arrive at given times on a fake clock, the engine's timers run between them, and a test reads what
each receiver was told, when.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.alerting.config import AlertingConfig
from vigil.alerting.engine import Engine
from vigil.alerting.intake import fingerprint
from vigil.alerting.pipeline.base import Batch, Candidate
from vigil.alerting.store import AlertStore
from vigil.alerting.topology import Topology, TopologyFile

from vigil.clock import FakeClock
from vigil.config import validate
from vigil.events import Alert

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday
IDENTITY = ("cluster", "host", "gpu_index", "job_id", "rank", "xid", "port")


def alert(name: str, status: str = "firing", severity: str = "critical", at: float = T0, **labels: str) -> Alert:
    full = {"alertname": name, "cluster": "c1", "severity": severity, **labels}
    fp = fingerprint(name, full, IDENTITY)
    summary = f"{name} on {labels.get('host') or labels.get('job_id') or 'c1'}"
    ends = at if status == "resolved" else None
    return Alert(fp, status, full, {"summary": summary}, at, ends, severity, "", at)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Told:
    at: float
    receiver: str  # the integration (outbox notifier)
    reason: str
    action: str
    key: str
    payload: Mapping[str, Any]

    @property
    def hosts(self) -> list[str]:
        return sorted({m["labels"].get("host", "") for m in self.payload["members"]})


class Timeline:
    def __init__(
        self, tmp_path: Path, config: Mapping[str, Any] | None = None, topology: Mapping[str, Any] | None = None
    ) -> None:
        self.clock = FakeClock(T0)
        self.config = validate(AlertingConfig, dict(config or {"notifiers": [{"type": "log", "name": "pager"}]}))
        self.store = AlertStore(tmp_path / "alerts.db")
        topo = Topology.from_spec(validate(TopologyFile, dict(topology or {}))) if topology else Topology()
        self.engine = Engine(self.config, self.store, self.clock, topology=topo)

    def at(self, t: float, *alerts: Alert, source: str = "detection") -> Batch:
        """Move to T0 + t (running every timer due on the way), then send these alerts as one batch."""
        self.until(t)
        return self.engine.ingest([Candidate(a, source) for a in alerts])  # type: ignore[arg-type]

    def until(self, t: float) -> None:
        """Move to T0 + t, running the engine's timers whenever one falls due on the way."""
        while True:
            due = self.engine.next_timer()
            if due is None or due > T0 + t:
                break
            self.clock.advance(max(0.0, due - self.clock.now()))
            self.engine.tick()
        self.clock.advance(max(0.0, T0 + t - self.clock.now()))
        self.engine.tick()

    def told(self, receiver: str | None = None) -> list[Told]:
        rows = [r for r in self.store.outbox() if receiver is None or r.notifier == receiver]
        return [Told(r.created_at - T0, r.notifier, r.reason, r.payload["action"], r.key, r.payload) for r in rows]

    def reasons(self, receiver: str | None = None) -> list[tuple[float, str]]:
        return [(round(t.at, 3), t.reason) for t in self.told(receiver)]
