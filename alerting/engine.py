"""The incident engine: the pipeline over one store, and what people do to incidents.

One ``Engine`` per process, shared by the consumer thread (detections and predictions), the API's
threads (the Alertmanager intake, the incident actions) and the timer; a lock makes them take turns,
as the store's write lock would anyway.

The people's side (the service layer the API calls): ``acknowledge``, ``assign``, ``note``,
``resolve``, ``reopen``. Each is one transaction that changes the incident, puts an entry with its
actor on the timeline and, where receivers were told, tells them: an acknowledge or resolve goes to
every receiver that got the incident's trigger, with the same dedup key, so PagerDuty acknowledges
or resolves its alert. An acknowledgement stops escalation and repeats; new alerts still update.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from vigil.alerting.config import AlertingConfig
from vigil.alerting.matchers import Matcher
from vigil.alerting.model import Incident, Silence, TimelineEntry
from vigil.alerting.notifiers.base import Action
from vigil.alerting.pipeline.base import Batch, Candidate
from vigil.alerting.pipeline.build import Pipeline, build_pipeline
from vigil.alerting.pipeline.notify import Outgoing
from vigil.alerting.priority import RecoveryCatalog
from vigil.alerting.silences import new_silence
from vigil.alerting.store import AlertStore
from vigil.alerting.topology import Topology, load_topology

from vigil.clock import Clock
from vigil.errors import VigilError


class IncidentError(VigilError, LookupError):
    """No such incident, or an action its state does not allow; the message says which."""


class Engine:
    def __init__(
        self,
        config: AlertingConfig,
        store: AlertStore,
        clock: Clock,
        topology: Topology | None = None,
        catalog: RecoveryCatalog | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.topology = topology if topology is not None else load_topology(config.topology.file)
        self.pipeline: Pipeline = build_pipeline(config, self.topology, catalog or RecoveryCatalog.load())
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ alerts in, timers

    def ingest(self, candidates: Sequence[Candidate]) -> Batch:
        """Run a batch through every stage; the batch says what changed (``changed``: alert versions to publish)."""
        with self._lock:
            return self.pipeline.run(self.store, candidates, self.clock.now())

    def tick(self) -> dict[int, str]:
        """Flush due notification groups and escalations; incident -> what it was told."""
        with self._lock:
            return self.pipeline.tick(self.store, self.clock.now())

    def next_timer(self) -> float | None:
        """When the next group or escalation is due (None: nothing waits)."""
        with self._lock:
            groups = self.store.next_flush_at()
            escalations = [i.next_escalation_at for i in self.store.escalations_due(float("inf"))]
        times = [t for t in (groups, *escalations) if t is not None]
        return min(times) if times else None

    # ------------------------------------------------------------------ what people do

    def acknowledge(self, incident_id: int, actor: str) -> Incident:
        return self._act(incident_id, actor, "acknowledged", ("open",), {"state": "acknowledged"}, "acknowledge")

    def resolve(self, incident_id: int, actor: str, note: str = "") -> Incident:
        values = {"state": "resolved", "resolved_by": actor}
        return self._act(incident_id, actor, "resolved", ("open", "acknowledged"), values, "resolve", {"note": note})

    def reopen(self, incident_id: int, actor: str, note: str = "") -> Incident:
        values: dict[str, Any] = {
            "state": "open",
            "resolved_at": None,
            "resolved_by": None,
            "acknowledged_at": None,
            "acknowledged_by": None,
        }
        return self._act(incident_id, actor, "reopened", ("resolved",), values, "trigger", {"note": note})

    def assign(self, incident_id: int, actor: str, assignee: str) -> Incident:
        values = {"assignee": assignee or None}
        return self._act(incident_id, actor, "assigned", None, values, None, {"assignee": assignee})

    def note(self, incident_id: int, actor: str, text: str) -> Incident:
        if not text.strip():
            raise IncidentError("text: a note needs text")
        return self._act(incident_id, actor, "note", None, {}, None, {"text": text})

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        with self._lock:
            return self.store.timeline(incident_id)

    def silence(
        self, matchers: Sequence[Matcher], starts_at: float, ends_at: float, actor: str, comment: str
    ) -> Silence:
        """Create a silence (the next batch and every flush from now on honour it)."""
        made = new_silence(matchers, starts_at, ends_at, actor, comment, self.clock.now())
        with self._lock:
            self.store.save_silence(made)
        return made

    def expire_silence(self, silence_id: str, actor: str) -> bool:
        with self._lock:
            return self.store.expire_silence(silence_id, actor, self.clock.now())

    def _act(
        self,
        incident_id: int,
        actor: str,
        kind: str,
        allowed: tuple[str, ...] | None,
        values: dict[str, Any],
        tell: Action | None,
        detail: dict[str, Any] | None = None,
    ) -> Incident:
        if not actor.strip():
            raise IncidentError("actor: every change to an incident names who made it")
        now = self.clock.now()
        with self._lock, self.store.transaction():
            incident = self.store.incident(incident_id)
            if incident is None:
                raise IncidentError(f"no incident {incident_id}")
            if allowed is not None and incident.state not in allowed:
                raise IncidentError(f"incident {incident_id} is {incident.state}: cannot be {kind}")
            stamps = {"acknowledged": "acknowledged", "resolved": "resolved"}
            if kind in stamps:
                values = {**values, f"{stamps[kind]}_at": now, f"{stamps[kind]}_by": actor}
            if kind in ("acknowledged", "resolved"):
                values["next_escalation_at"] = None  # a person has it: stop escalating
            self.store.update_incident(incident_id, {**values, "updated_at": now})
            self.store.add_events([TimelineEntry(incident_id, now, kind, actor, detail or {})])
            changed = self.store.incident(incident_id)
            if changed is None:
                raise IncidentError(f"incident {incident_id} vanished while being {kind}")
            if tell is not None:
                self._tell(changed, kind, tell, now)
            return changed

    def _tell(self, incident: Incident, reason: str, action: Action, now: float) -> None:
        """Tell every receiver that got a trigger about the incident (its timeline says which, on which
        dedup key), so the acknowledge or resolve lands on the same PagerDuty alert."""
        alerts = [s for s in self.store.of_incident(incident.id) if s.role != "symptom"]
        heard = {
            (str(e.detail.get("receiver")), str(e.detail.get("key")))
            for e in self.store.timeline(incident.id)
            if e.kind == "notified" and e.detail.get("action") == "trigger" and e.detail.get("key")
        }
        out = Outgoing()
        for receiver, key in sorted(heard):
            out.send(self.pipeline.telling, incident, receiver, key, alerts, reason, action, now)
        out.write(self.store, now)
        if action == "resolve":
            self.store.drop_groups([g.key for g in self.store.groups_of(incident.id)])
