"""Remediation inside the alerting process: the receiver, the runner thread and the approvals provider.

- :class:`RemediationReceiver` is a notifier (``type: remediation`` in ``alerting.notifiers``), so
  incidents reach it through the same routing, silences and maintenance windows as a person, and
  through the durable outbox: a notification it has not yet turned into a run is delivered again
  after a crash. It plans the incident (``Remediation.submit``; one run per incident and runbook).
- :class:`RemediationRunner` is a thread that advances due runs (``Executor``) and, when verification
  is on, runs the telemetry watch's consumer on another thread.
- :class:`Approvals` is the provider the HTTP API and web UI call for the "pending approvals" page:
  ``pending()``, ``approve(id, actor)``, ``deny(id, actor)``; each decision is recorded with its
  actor in the approvals table, the audit log and the incident's timeline, and wakes the runner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.alerting.intake import SEVERITY_RANK
from vigil.alerting.notifiers.base import DeliveryResult, Member, Notification
from vigil.alerting.runbooks.engine import Parts, Remediation
from vigil.alerting.runbooks.executor import Executor
from vigil.alerting.runbooks.model import Subject
from vigil.alerting.store import AlertStore, Database

log = logging.getLogger(__name__)


def _most_telling(member: Member) -> tuple[bool, int]:
    """An XID first, then the most severe."""
    return "xid" not in member.labels, -SEVERITY_RANK.get(member.severity, 1)


def subjects_of(notification: Notification) -> list[Subject]:
    """What a notification asks the robot to act on: one subject per host its members are on.

    An incident can span hosts (a job's or a switch's burst holds alerts from several nodes); a
    runbook acts on ``{host}``, so the members of each host are planned apart, and within a host the
    labels come from its most telling member first (one with an XID, then the most severe): an XID 79
    on node-05 is never planned on node-01 because node-01's thermal alert came first. One host (the
    common case) keeps the incident's own key; several get ``<key>@<host>`` each."""
    by_host: dict[str, list[Member]] = {}
    for member in notification.members:
        by_host.setdefault(member.labels.get("host", ""), []).append(member)
    hosts = [h for h in by_host if h] or [""]
    if "" in by_host and hosts != [""]:  # job-wide members (a hang, a NaN loss) go with every host
        for host in hosts:
            by_host[host] = [*by_host[host], *by_host[""]]
    raw_id = notification.incident_id
    incident_id = int(raw_id) if raw_id.isdigit() else None
    out = []
    for host in hosts:
        key = notification.dedup_key if len(hosts) == 1 else f"{notification.dedup_key}@{host}"
        members = sorted(by_host.get(host, []), key=_most_telling)
        labels: dict[str, str] = {}
        for member in members:
            for name, value in member.labels.items():
                labels.setdefault(name, value)
        labels["incident"] = raw_id if incident_id is not None else (raw_id[:12] or notification.dedup_key[:12])
        labels["incident_key"] = notification.dedup_key
        out.append(Subject(key, labels, incident_id, notification.severity, notification.summary))
    return out


class RemediationReceiver:
    """A notifier whose delivery is a plan (and, in execute mode, a run)."""

    def __init__(self, parts: Parts, db: Database | Path | str, wake: threading.Event | None = None) -> None:
        self.parts, self.db, self.wake = parts, db, wake
        self._local = threading.local()

    def _engine(self) -> Remediation:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = Remediation(self.parts, AlertStore(self.db))
            self._local.engine = engine
        return engine

    def send(self, notification: Notification) -> DeliveryResult:
        if notification.action != "trigger":
            return DeliveryResult.delivered()  # a resolve does not undo a run: the node still needs its checks
        for subject in subjects_of(notification):
            made = self._engine().submit(subject)
            if made is None:
                continue
            log.info("remediation %s for incident %s: %s (%s)", made.run_id, subject.key, made.runbook, made.verdict)
            if self.wake is not None:
                self.wake.set()
        return DeliveryResult.delivered()

    def close(self) -> None:
        engine = getattr(self._local, "engine", None)
        if engine is not None:
            engine.store.close()


class RemediationRunner:
    def __init__(self, parts: Parts, db: Database | Path | str, helpers: Sequence[Callable[[Any], None]] = ()) -> None:
        """``helpers``: callables ``(stop)`` run on their own threads (the verification watch's consumer,
        the fleet channel's report reader)."""
        self.parts, self.db, self._helpers = parts, db, list(helpers)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> RemediationRunner:
        self._threads = [threading.Thread(target=self._loop, name="remediation-runner", daemon=True)]
        self._threads += [
            threading.Thread(target=h, args=(self._stop,), name=f"remediation-helper-{i}", daemon=True)
            for i, h in enumerate(self._helpers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _loop(self) -> None:
        store = AlertStore(self.db)
        executor = Executor(Remediation(self.parts, store))
        try:
            while not self._stop.is_set():
                try:
                    executor.advance_due()
                except Exception:
                    log.exception("remediation runner step failed; retrying")
                    self._stop.wait(5.0)
                self.wake.wait(self.parts.config.interval)
                self.wake.clear()
        finally:
            store.close()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        for thread in self._threads:
            thread.join(timeout=10.0)


@dataclass(frozen=True, slots=True)
class PendingApproval:
    id: int
    subject: str
    incident_id: int | None
    run_id: str
    action: str
    params: dict[str, Any]
    why: list[str]
    requested_at: float
    expires_at: float | None


class Approvals:
    """The provider behind the API's and UI's pending approvals (list, approve, deny)."""

    def __init__(self, engine: Remediation, wake: threading.Event | None = None) -> None:
        self.engine, self.wake = engine, wake

    def pending(self) -> list[PendingApproval]:
        now = self.engine.parts.clock.now()
        rows = self.engine.store.step_approvals(now - self.engine.config.guards.approval_ttl)
        return [
            PendingApproval(
                r["id"],
                r["subject"],
                r["incident_id"],
                str(r["detail"].get("run_id", "")),
                str(r["detail"].get("action", "")),
                dict(r["detail"].get("params", {})),
                list(r["detail"].get("why", [])),
                r["requested_at"],
                r["expires_at"],
            )
            for r in rows
            if r["state"] == "pending" and (r["expires_at"] is None or r["expires_at"] > now)
        ]

    def approve(self, approval_id: int, actor: str, comment: str = "") -> bool:
        return self._decide(approval_id, True, actor, comment)

    def deny(self, approval_id: int, actor: str, comment: str = "") -> bool:
        return self._decide(approval_id, False, actor, comment)

    def _decide(self, approval_id: int, approve: bool, actor: str, comment: str) -> bool:
        store, now = self.engine.store, self.engine.parts.clock.now()
        row = next((a for a in store.approvals() if a["id"] == approval_id and a["kind"] == "remediation"), None)
        if row is None:
            return False
        with store.transaction():
            if not store.decide_approval(approval_id, approve, actor, now):
                return False
            detail = {"approval": approval_id, "step": row["detail"].get("step"), "comment": comment}
            self.engine.audit("approved" if approve else "rejected", actor, row["detail"].get("run_id"), detail)
            run_id = row["detail"].get("run_id")
            if isinstance(run_id, str):
                store.update_run(run_id, next_at=now)
        self.engine.timeline(row["incident_id"], "approved" if approve else "rejected", actor, detail)
        if self.wake is not None:
            self.wake.set()
        return True
