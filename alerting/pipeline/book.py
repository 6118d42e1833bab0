"""The batch's view of incidents: the open ones by failure domain, and what the batch does to them.

Correlation opens, joins and merges incidents through this book; at the end of the batch
``flush`` writes each touched incident once (members, timeline, title, severity, priority), so a
storm of ten thousand alerts joining one incident is one update and one timeline entry per batch,
not ten thousand.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vigil.alerting.intake import SEVERITY_RANK
from vigil.alerting.model import ENGINE, Domain, Incident, Member, TimelineEntry
from vigil.alerting.priority import RecoveryCatalog
from vigil.alerting.store import AlertStore
from vigil.alerting.topology import Topology

from vigil.events import Severity

_SHOWN = 20  # member alerts named in a timeline entry; the rest are counted


@dataclass
class Pending:
    """What this batch adds to one incident."""

    joined: list[tuple[str, str, str]] = field(default_factory=list)  # (fingerprint, role, what)
    resolved: list[str] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    hours: float = 0.0
    severity: str = "info"
    events: list[TimelineEntry] = field(default_factory=list)


def describe(labels: Mapping[str, str]) -> str:
    where = labels.get("host") or labels.get("job_id") or labels.get("cluster") or "?"
    gpu = f"/gpu{labels['gpu_index']}" if labels.get("gpu_index") else ""
    return f"{labels.get('alertname', '?')}@{where}{gpu}"


class IncidentBook:
    """Loads only what the batch can touch: the open incidents of the batch's domains, the young ones
    (a burst may merge them), and any other incident on demand (``get``)."""

    def __init__(
        self,
        store: AlertStore,
        now: float,
        topology: Topology,
        catalog: RecoveryCatalog,
        domains: Iterable[str],
        window: float,
    ) -> None:
        self.store = store
        self.now = now
        self._topology = topology
        self._catalog = catalog
        self.by_domain: dict[str, Incident] = {}
        self.by_id: dict[int, Incident] = {}
        self.young: dict[int, Incident] = {}  # opened in this batch (a burst may merge them)
        self._window = window
        for incident in store.open_incidents(domains=domains):
            self._index(incident)
        self.pending: dict[int, Pending] = {}

    def get(self, incident_id: int | None) -> Incident | None:
        if incident_id is None:
            return None
        if incident_id not in self.by_id:
            found = self.store.incident(incident_id)
            if found is None:
                return None
            self.by_id[incident_id] = found
        return self.by_id[incident_id]

    def _index(self, incident: Incident) -> None:
        self.by_id[incident.id] = incident
        if incident.is_open:
            self.by_domain[incident.domain.key] = incident

    def open(self, domain: Domain, severity: Severity, title: str, detail: Mapping[str, Any]) -> Incident:
        key = f"vigil-{domain.kind}-{uuid.uuid4().hex[:12]}"
        full = {"suspected": domain.key, **detail}
        values = {
            "key": key,
            "domain": domain,
            "state": "open",
            "severity": severity,
            "priority": 0.0,
            "title": title,
            "opened_at": self.now,
            "updated_at": self.now,
            "detail": full,
        }
        incident_id = self.store.create_incident(values)
        incident = Incident(incident_id, key, domain, "open", severity, 0.0, title, self.now, self.now, detail=full)
        self._index(incident)
        self.young[incident_id] = incident
        self.event(incident_id, "opened", {"domain": domain.key, "title": title})
        return incident

    def event(self, incident_id: int, kind: str, detail: Mapping[str, Any]) -> None:
        self._pending(incident_id).events.append(TimelineEntry(incident_id, self.now, kind, ENGINE, dict(detail)))

    def join(self, incident_id: int, fp: str, role: str, scope: Mapping[str, str], severity: str) -> None:
        pending = self._pending(incident_id)
        pending.joined.append((fp, role, describe(scope)))
        if role == "member":  # a symptom neither raises severity nor adds risk: its cause already did
            if scope.get("host"):
                pending.nodes.add(scope["host"])
            if scope.get("job_id"):
                pending.jobs.add(scope["job_id"])
            pending.hours = max(pending.hours, self._catalog.recovery_hours(scope))
            if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(pending.severity, 0):
                pending.severity = severity

    def resolve_member(self, incident_id: int, fp: str) -> None:
        self._pending(incident_id).resolved.append(fp)

    def merge(self, child: Incident, parent: Incident) -> list[str]:
        """Fold a young incident into the burst incident that explains it; returns the moved alerts."""
        moved = self.store.move_members(child.id, parent.id, self.now)
        self.store.set_engine_columns(moved, {"incident_id": parent.id})
        self.store.update_incident(child.id, {"state": "merged", "merged_into": parent.id, "updated_at": self.now})
        # Its groups are looked at now: a receiver that was told about it is told it is closed (merged).
        self.store.save_groups([replace(g, next_flush_at=self.now) for g in self.store.groups_of(child.id)])
        self.by_domain.pop(child.domain.key, None)
        self.young.pop(child.id, None)
        self.by_id[child.id] = replace(child, state="merged", merged_into=parent.id)
        self.event(child.id, "merged", {"into": parent.id, "key": parent.key})
        self.event(parent.id, "absorbed", {"incident": child.id, "domain": child.domain.key, "alerts": len(moved)})
        pending = self._pending(parent.id)
        pending.nodes |= set(child.detail.get("nodes", ()))
        pending.jobs |= set(child.detail.get("jobs", ()))
        pending.hours = max(pending.hours, float(child.detail.get("hours", 0.0)))
        return moved

    def young_under(self, domain: Domain, window: float) -> list[Incident]:
        """Open incidents about GPUs or nodes inside ``domain``, opened within ``window``."""
        inside = {domain.id} if domain.kind == "node" else set(self._topology.members.get(domain.key, ()))
        for incident in self.store.open_incidents(hosts=inside, opened_after=self.now - window):
            if incident.id not in self.by_id:
                self._index(incident)
            self.young.setdefault(incident.id, self.by_id[incident.id])
        out = []
        for incident in list(self.young.values()):
            host = incident.domain.id.split("/")[0]
            if (
                incident.domain.kind in ("gpu", "disk", "node")
                and incident.domain != domain
                and host in inside
                and incident.opened_at >= self.now - window
                and incident.is_open
            ):
                out.append(incident)
        return out

    def flush(self) -> set[int]:
        """Write what the batch did to each incident; returns the incidents touched."""
        members: list[Member] = []
        events: list[TimelineEntry] = []
        updates: list[tuple[int, dict[str, Any]]] = []
        for incident_id, pending in self.pending.items():
            members += [Member(incident_id, fp, self.now, role) for fp, role, _ in pending.joined]  # type: ignore[arg-type]
            events += pending.events
            if pending.joined:
                shown = [what for _, _, what in pending.joined[:_SHOWN]]
                events.append(
                    TimelineEntry(
                        incident_id, self.now, "alerts_joined", ENGINE, {"count": len(pending.joined), "alerts": shown}
                    )
                )
            if pending.resolved:
                events.append(
                    TimelineEntry(incident_id, self.now, "alerts_resolved", ENGINE, {"count": len(pending.resolved)})
                )
            update = self._update(incident_id, pending)
            if update is not None:
                updates.append((incident_id, update))
        self.store.update_incidents(updates)
        self.store.add_members(_unique(members, self.store))
        self.store.add_events(events)
        return set(self.pending)

    def _update(self, incident_id: int, pending: Pending) -> dict[str, Any] | None:
        incident = self.get(incident_id)
        if incident is None:
            return None
        detail = dict(incident.detail)
        nodes = sorted(set(detail.get("nodes", ())) | pending.nodes)
        jobs = sorted(set(detail.get("jobs", ())) | pending.jobs)
        hours = max(float(detail.get("hours", 0.0)), pending.hours)
        detail.update(nodes=nodes, jobs=jobs, hours=hours, alerts=int(detail.get("alerts", 0)) + len(pending.joined))
        gpus, counted = self._gpus(nodes, jobs)
        detail.update(gpus=gpus, counted=counted)
        severity = incident.severity
        if SEVERITY_RANK.get(pending.severity, 0) > SEVERITY_RANK.get(severity, 0):
            severity = pending.severity  # type: ignore[assignment]
        values = {"detail": detail, "priority": round(gpus * hours, 2), "severity": severity, "updated_at": self.now}
        if len(nodes) > 1 and incident.domain.kind not in ("gpu", "node", "disk"):
            values["title"] = f"{len(nodes)} nodes alerting under {incident.domain.kind} {incident.domain.id}"
        self.by_id[incident_id] = replace(incident, severity=severity, detail=detail, priority=values["priority"])  # type: ignore[arg-type]
        return values

    def _gpus(self, nodes: Iterable[str], jobs: Iterable[str]) -> tuple[int, list[str]]:
        known = [j for j in jobs if j in self._topology.nodes_of]
        if known:
            return sum(self._topology.job_gpus(j) for j in known), [f"job:{j}" for j in known]
        node_list = list(nodes)
        return sum(self._topology.node_gpus(n) for n in node_list), [f"node:{n}" for n in node_list]

    def _pending(self, incident_id: int) -> Pending:
        return self.pending.setdefault(incident_id, Pending())


def _unique(members: list[Member], store: AlertStore) -> list[Member]:
    """An alert that re-fires into the incident it already belonged to is not added twice."""
    have = store.memberships(m.fingerprint for m in members) if members else set()
    seen: set[tuple[int, str]] = set()
    out = []
    for m in members:
        key = (m.incident_id, m.fingerprint)
        if key not in have and key not in seen:
            seen.add(key)
            out.append(m)
    return out
