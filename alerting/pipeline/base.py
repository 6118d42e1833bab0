"""The pipeline's one interface: a stage takes a batch of alerts and passes on the ones that continue.

Alertmanager's shape (``Stage.Exec(ctx, alerts) -> alerts``), on a batch: everything a poll of the
consumer (or one Alertmanager webhook call) brought is handled by every stage in turn, inside one
store transaction, so a batch costs a few queries rather than a few per alert, and its state change
and the notifications it causes commit together.

Every stage says what it did with every alert it saw, and why (:meth:`Candidate.note`): the trail
is stored per alert (``alert_history``) and served by ``GET /api/v1/alerts/{fp}/history``. A stage
that stops an alert (a duplicate, a muted one that needs no route) says so and leaves it out of what
it returns; the record stage still sees every candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vigil.alerting.model import Domain, Incident, StageDecision

from vigil.events import Alert

if TYPE_CHECKING:  # the store is SQLAlchemy's (server extra); the config models import this module
    from vigil.alerting.store import AlertStore, StoredAlert

Source = Literal["detection", "prediction", "alertmanager"]


@dataclass(frozen=True, slots=True)
class Mute:
    """Why an alert is muted: a silence, a maintenance window, an inhibition rule (and its cause), or a
    node the remediation robot is working on."""

    kind: Literal["silence", "maintenance", "inhibited", "remediation"]
    id: str  # the silence id, the window's name, the rule's index
    reason: str
    cause: str | None = None  # inhibited: the fingerprint of the alert that inhibits it

    def describe(self) -> str:
        return f"{self.kind}:{self.id}"


class Muter(Protocol):
    """Silences, maintenance windows and inhibition rules alike: does anything mute this alert now?
    (``labels`` is the alert's scope: its labels and what the topology implies.)"""

    def mutes(self, fingerprint: str, labels: Mapping[str, str], now: float) -> Mute | None: ...


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """One route an alert matched, with the settings it inherited (``routing.py``)."""

    route: str  # the route's path, e.g. "root/2"
    receiver: str
    group_by: tuple[str, ...] | None  # None: "..." (every label)
    group_wait: float
    critical_group_wait: float
    group_interval: float
    repeat_interval: float
    escalation: str | None = None


@dataclass(slots=True)
class Candidate:
    """One alert on its way through the pipeline, and what the stages decided about it."""

    alert: Alert  # as its source described it
    source: Source = "detection"
    escalate: bool = False  # predictions: a more severe state within one episode is news
    generator_url: str | None = None
    stored: StoredAlert | None = None  # its state before this batch
    reason: str = ""  # the alert transition: first, resolved, escalated, no_change
    state: Alert | None = None  # the alert state to store (None: nothing changes)
    scope: dict[str, str] = field(default_factory=dict)  # labels + what topology and source add
    domains: tuple[Domain, ...] = ()  # failure domains, most specific first
    incident_id: int | None = None
    role: Literal["member", "symptom"] = "member"
    mute: Mute | None = None
    routes: list[RouteMatch] = field(default_factory=list)
    # (stage, decision, reason, detail): kept as tuples on the hot path, StageDecisions on demand
    trail: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint

    def note(self, stage: str, decision: str, reason: str, **detail: Any) -> None:
        self.trail.append((stage, decision, reason, detail))

    def decisions(self) -> list[StageDecision]:
        return [StageDecision(*step) for step in self.trail]


@dataclass(slots=True)
class Batch:
    """What a stage works on: the candidates still going, the store inside the batch's transaction,
    and the time the batch is handled at."""

    store: AlertStore
    now: float
    candidates: list[Candidate]
    everything: list[Candidate] = field(default_factory=list)  # every candidate, for the record stage
    changed: list[tuple[Alert, int]] = field(default_factory=list)  # alert versions to publish
    touched_incidents: set[int] = field(default_factory=set)  # incidents whose groups must be looked at
    incidents: dict[int, Incident] = field(default_factory=dict)  # what correlation read or opened, by id
    _remediated: Mapping[str, tuple[str, int | None]] | None = None

    def nodes_in_remediation(self) -> Mapping[str, tuple[str, int | None]]:
        """The store's nodes under remediation, read once per batch (correlate and mute both ask)."""
        if self._remediated is None:
            self._remediated = self.store.nodes_in_remediation()
        return self._remediated


class Stage(Protocol):
    name: str

    def run(self, batch: Batch) -> list[Candidate]:
        """Decide for each candidate of ``batch.candidates``; return the ones that go on."""
        ...
