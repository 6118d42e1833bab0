"""The incident engine's domain model: what a person acts on, as plain frozen values.

- An **alert** is one condition on one thing (``vigil.events.Alert``: fingerprint, labels,
  annotations, firing/resolved). Alerts come from detections, predictions and Alertmanager.
- An **incident** is the unit that pages: the alerts about one failure domain (a GPU, a node, a
  rack, a switch, a job), correlated by ``correlate.py``. It has a stable ``key`` (the PagerDuty
  ``dedup_key`` of every trigger, acknowledge and resolve about it), a state, a priority (GPU-hours
  at risk), members, an assignee and a timeline.
- A **timeline entry** is one thing that happened to an incident, with its actor (``vigil`` for the
  engine, a user name for a person); kinds are open strings, so the remediation and canary work add
  their own (``remediation_step``, ``approval_requested``...) without a schema change.
- A **silence** mutes the alerts its matchers select between ``starts_at`` and ``ends_at``; an
  expired silence is kept for audit. Maintenance windows and inhibition mute through the same
  :class:`~vigil.alerting.pipeline.base.Muter` interface.
- A **notification group** is what Alertmanager calls an aggregation group: one incident on one
  route (and, when a route's ``group_by`` splits it, one set of label values); its timers
  (``group_wait``, ``group_interval``, ``repeat_interval``) decide when the incident is told to the
  route's receiver, and the notification log records each decision with its reason.
- The **stage trail** of an alert is what each pipeline stage decided about it, and why
  (``GET /api/v1/alerts/{fp}/history``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vigil.events import Severity

IncidentState = Literal["open", "acknowledged", "resolved", "merged"]
OPEN_STATES: tuple[IncidentState, ...] = ("open", "acknowledged")
DomainKind = Literal["gpu", "node", "rack", "switch", "job", "rank", "disk", "group"]
ENGINE = "vigil"  # the actor of what the engine does by itself

# Notification-log reasons (DESIGN §4), plus the incident actions a person takes.
NotifyReason = Literal[
    "first",
    "new_alerts_in_group",
    "resolved",
    "repeat_interval_elapsed",
    "no_change",
    "escalated",
    "acknowledged",
    "reopened",
    "merged",
]


@dataclass(frozen=True, slots=True, order=True)
class Domain:
    """A failure domain: ``Domain("node", "node-07")``; ``key`` is how the store indexes it."""

    kind: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, key: str) -> Domain:
        kind, _, ident = key.partition(":")
        return cls(kind, ident)


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    key: str  # stable for the incident's life: the dedup_key receivers fold its notifications by
    domain: Domain
    state: IncidentState
    severity: Severity
    priority: float  # GPU-hours at risk (GPUs affected x expected hours to recover)
    title: str
    opened_at: float
    updated_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    assignee: str | None = None
    escalation_policy: str | None = None
    escalation_level: int = 0
    next_escalation_at: float | None = None
    merged_into: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)  # suspected domain, GPUs at risk, ...

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class Member:
    """An alert's place in an incident: ``symptom`` when an inhibition rule made it a consequence
    of another member (muted, shown, never paged on its own)."""

    incident_id: int
    fingerprint: str
    joined_at: float
    role: Literal["member", "symptom"] = "member"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    incident_id: int
    at: float
    kind: str  # opened, alert_joined, alert_resolved, promoted, merged, notified, acknowledged, ...
    actor: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Any, ...]  # vigil.alerting.matchers.Matcher
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    updated_at: float = 0.0
    expired_by: str | None = None  # who ended it early (None: ran its course, or still running)

    def state(self, now: float) -> Literal["pending", "active", "expired"]:
        if now >= self.ends_at:
            return "expired"
        return "active" if now >= self.starts_at else "pending"


@dataclass(frozen=True, slots=True)
class StageDecision:
    """What one stage did with one alert: ``pass`` on, ``drop`` (a duplicate), ``mute``, ``join`` an
    incident, ``open`` one, ``route`` to receivers, ``hold`` for a timer, ``notify``."""

    stage: str
    decision: str
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.stage, "decision": self.decision, "reason": self.reason}
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


@dataclass(frozen=True, slots=True)
class GroupState:
    """One notification group (incident x route x group labels) and its timers."""

    key: str
    incident_id: int
    route: str  # the route's path in the tree, e.g. "root/1/0"
    receiver: str
    dedup_key: str
    group_labels: Mapping[str, str]
    next_flush_at: float | None  # group_wait, then group_interval; None: nothing to tell
    last_notified_at: float | None = None
    notified_firing: tuple[str, ...] = ()  # fingerprints firing at the last notification
    notified_resolved: tuple[str, ...] = ()
    created_at: float = 0.0
