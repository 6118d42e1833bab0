"""The remediation engine: from an incident to a stored, audited plan, and the state the guards read.

``submit`` is what the receiver calls for each incident it is told about: pick the runbook (XID policy,
then ``match``), count this XID on its GPU for the policy's ladder, plan it with the current state,
store the run and its steps (one run per incident and runbook: a resent notification changes
nothing), write the plan to the audit log and the incident's timeline. In ``dry_run`` mode that is
all; in ``execute`` mode the run is due at once and the executor (``executor.py``) takes it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vigil.alerting.model import ENGINE, TimelineEntry
from vigil.alerting.notifiers.base import Domain, Notification
from vigil.alerting.runbooks.actions import ActionSet
from vigil.alerting.runbooks.config import RemediationConfig
from vigil.alerting.runbooks.model import Plan, PlannedStep, Runbook, Subject
from vigil.alerting.runbooks.planner import Acted, Approval, State, choose_runbook, plan
from vigil.alerting.runbooks.policy import XidPolicy
from vigil.alerting.runbooks.verify import Telemetry
from vigil.alerting.store import AlertStore, RunRow

from vigil.clock import Clock
from vigil.events import RemediationRun, StepState

log = logging.getLogger(__name__)


def run_id_of(incident_key: str, runbook: str) -> str:
    return "rr-" + hashlib.sha256(f"{incident_key}|{runbook}".encode()).hexdigest()[:12]


def gpu_identity(labels: Mapping[str, str]) -> str:
    """The board a ladder counts by: its serial when known, else its slot (host and index)."""
    serial = labels.get("gpu_serial") or labels.get("serial")
    return f"serial:{serial}" if serial else f"slot:{labels.get('host', '?')}/{labels.get('gpu_index', '?')}"


@dataclass(frozen=True, slots=True)
class Parts:
    """What the engine is built from (the composition root makes them from config)."""

    config: RemediationConfig
    runbooks: Mapping[str, Runbook]
    policy: XidPolicy
    actions: ActionSet
    clock: Clock
    telemetry: Telemetry | None = None
    pagers: tuple[str, ...] = ()  # notifier names that page a person
    publish: Callable[[RemediationRun], None] | None = None


class Remediation:
    def __init__(self, parts: Parts, store: AlertStore) -> None:
        self.parts = parts
        self.config = parts.config
        self.store = store

    # ------------------------------------------------------------------ planning

    def propose(self, subject: Subject, record: bool = False) -> Plan | None:
        """The plan the engine would make now (``record``: count this XID for the ladder, once)."""
        counts = self._ladder(subject, record, self._absorbed(subject))
        runbook, why = choose_runbook(subject, self.parts.runbooks, self.parts.policy, counts)
        if runbook is None:
            log.info("no runbook for incident %s: %s", subject.key, "; ".join(why))
            return None
        now = self.parts.clock.now()
        run_id = run_id_of(subject.key, runbook.name)
        state, actions = self.state(now), self.parts.actions
        return plan(subject, runbook, state, actions, self.config.guards, run_id, why, self.config.mode)

    def submit(self, subject: Subject) -> Plan | None:
        """Plan the incident and store the run; None when no runbook applies or the run exists."""
        made = self.propose(subject, record=True)
        if made is None:
            return None
        now = self.parts.clock.now()
        execute = self.config.mode == "execute"
        run = {
            "id": made.run_id,
            "incident_key": subject.key,
            "incident_id": subject.incident_id,
            "runbook": made.runbook,
            "mode": made.mode,
            "state": "running" if execute else "planned",
            "labels": dict(subject.labels),
            "plan": made.to_json(),
            "created_at": now,
            "updated_at": now,
            "next_at": now if execute else None,
            "detail": {},
        }
        steps = [self._step_row(made.run_id, s, subject) for s in made.steps]
        if not self.store.create_run(run, steps, self._absorbed(subject)):  # one run per runbook, merges too
            return None
        self.audit("plan", ENGINE, made.run_id, made.to_json())
        self.timeline(subject.incident_id, "remediation_planned", ENGINE, _plan_words(made))
        self.publish(made.run_id)
        return made

    @staticmethod
    def _step_row(run_id: str, step: PlannedStep, subject: Subject) -> dict[str, Any]:
        return {
            "key": step.key,
            "run_id": run_id,
            "phase": step.phase,
            "idx": step.index,
            "name": step.name,
            "action": step.action,
            "params": dict(step.params),
            "target": step.target,
            "job": subject.labels.get("job_id") or None,
            "state": "pending",
            "attempts": 0,
            "result": {"planned": step.verdict, "why": list(step.why)},
        }

    def _absorbed(self, subject: Subject) -> list[str]:
        """The keys of the incidents this one absorbed: their episode and their runs are its own."""
        return self.store.absorbed_keys(subject.incident_id) if subject.incident_id is not None else []

    def _ladder(self, subject: Subject, record: bool, absorbed: Sequence[str]) -> dict[float, int]:
        code = subject.labels.get("xid", "")
        rule = self.parts.policy.rule(int(code)) if code.isdigit() else None
        if rule is None or not rule.ladder:
            return {}
        windows = sorted({r.window for r in rule.ladder})
        gpu, now = gpu_identity(subject.labels), self.parts.clock.now()
        return self.store.count_xid(gpu, int(code), subject.key, now, windows, record, absorbed)

    # ------------------------------------------------------------------ the state the guards read

    def state(self, now: float) -> State:
        guards = self.config.guards
        horizon = max(
            [guards.blast_radius.window, guards.approval_ttl, *guards.cooldowns.values()]
            + [r.window for r in guards.rate_limits.values()]
            + [s.guards.auto.window for rb in self.parts.runbooks.values() for s in rb.steps if s.guards.auto]
        )
        rows = self.store.acted_since(now - horizon)
        acted = tuple(Acted(s.action, s.target, s.job, s.started_at or now, s.run_id) for s in rows)
        approvals: dict[str, Approval] = {}
        for row in self.store.step_approvals(now - guards.approval_ttl):
            key = row["detail"].get("step")
            state = row["state"]
            if state == "pending" and row["expires_at"] is not None and row["expires_at"] <= now:
                state = "expired"
            if isinstance(key, str):
                approvals[key] = Approval(state, row["decided_by"])
        return State(now, self.cluster_nodes(), acted, approvals)

    def cluster_nodes(self) -> int:
        configured = self.config.guards.blast_radius.cluster_nodes
        if configured is not None:
            return configured
        seen = getattr(self.parts.telemetry, "hosts_seen", None)
        return max(1, seen() if callable(seen) else 1)

    # ------------------------------------------------------------------ records: audit, timeline, pages, events

    def audit(self, kind: str, actor: str, run_id: str | None, detail: Mapping[str, Any]) -> None:
        self.store.audit(self.parts.clock.now(), actor, kind, run_id, detail)

    def timeline(self, incident_id: int | None, kind: str, actor: str, detail: Mapping[str, Any]) -> None:
        if incident_id is not None and self.store.incident(incident_id) is not None:
            self.store.add_events([TimelineEntry(incident_id, self.parts.clock.now(), kind, actor, detail)])

    def page(self, run: RunRow, reason: str, summary: str) -> None:
        """Tell a person (the configured pagers) through the outbox: an approval is needed, or a run failed."""
        now = self.parts.clock.now()
        node = str(run.labels.get("host", "")) or run.incident_key
        for notifier in self.parts.pagers:
            note = Notification(
                dedup_key=f"remediation:{run.id}",
                action="trigger",
                reason=reason,
                summary=summary[:1000],
                severity="critical",
                source=node,
                timestamp=datetime.fromtimestamp(now, tz=UTC),
                class_="Remediation",
                incident_id=str(run.incident_id or run.incident_key),
                domain=Domain(kind="node", id=node) if node else None,
                custom_details={"run_id": run.id, "runbook": run.runbook, "labels": dict(run.labels)},
                receiver=notifier,
            )
            self.store.enqueue(f"remediation:{run.id}", notifier, reason, note.to_json(), now, run.incident_id)

    def publish(self, run_id: str) -> None:
        if self.parts.publish is None:
            return
        run = self.store.run(run_id)
        if run is None:
            return
        # A step not yet run shows its planned verdict's why (approved by policy, waits for a person).
        steps = tuple(StepState(s.name, s.state, str(s.result.get("detail") or "; ".join(s.result.get("why") or [])))
                      for s in self.store.steps(run_id))
        event = RemediationRun(
            self.parts.clock.now(),
            run.id,
            run.runbook,
            run.incident_key,
            steps,
            str(run.detail.get("reason", "")),
            ENGINE,
            run.state,
            run.mode,
            run.incident_id,
            {str(k): str(v) for k, v in run.labels.items()},
        )
        self.parts.publish(event)


def _plan_words(made: Plan) -> dict[str, Any]:
    """What the incident's timeline shows of a plan: each step's verdict and why, in order."""
    return {
        "run_id": made.run_id,
        "runbook": made.runbook,
        "mode": made.mode,
        "verdict": made.verdict,
        "why": list(made.why),
        "steps": [f"{s.name} ({s.action}): {s.verdict}, {'; '.join(s.why)}" for s in made.steps],
    }
