"""Runbooks and plans as plain frozen values.

A **runbook** (YAML data, ``runbook.schema.json``) says what to do about a kind of incident:

- ``match``: label matchers in the routing syntax (``alertname="GpuXidFatal"``, ``xid=~"79|48"``),
  all of which the incident's labels must meet;
- ``steps``: ordered actions, each with ``params`` (templates over the incident's labels, the safe
  ``{name}`` rules of alerting's prediction templates), an optional ``when`` (matchers: run the step
  only if they hold) and ``guards`` (approval, blast radius, cool-down);
- ``verify``: checks run after the steps before the node returns to service (telemetry back for every
  GPU, no new XID for a hold period, error counters unchanged, an optional health command), within a
  ``timeout``; ``on_success`` holds the steps that return it (resume the node);
- ``on_failure``: ``escalate`` (page a human, leave everything as it is), ``rollback`` (undo the steps
  that ran, newest first, then escalate) or ``stop``.

A **plan** is what the pure planner (``planner.py``) makes of one incident with one runbook and the
current state: the steps it would take with their rendered parameters, idempotency keys and guard
verdicts (``go``, ``approval`` needed, ``blocked``, ``skip``) and why. Dry-run mode stops there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vigil.alerting.matchers import Matcher

OnFailure = Literal["escalate", "rollback", "stop"]
Verdict = Literal["go", "approval", "blocked", "skip"]
Phase = Literal["steps", "on_success", "rollback"]


@dataclass(frozen=True, slots=True)
class AutoApproval:
    """Approve by policy (actor ``policy``) the first ``max`` uses per target within ``window``."""

    max: int
    window: float


@dataclass(frozen=True, slots=True)
class Guards:
    approval: Literal["required", "auto", "none"] = "none"
    auto: AutoApproval | None = None  # with approval "auto"
    blast_radius: bool = True  # counted against the circuit breaker when the action has a target
    cooldown: float | None = None  # seconds; None: the configured default for the action


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    action: str  # as written: a registered name or an alias (node.drain)
    params: Mapping[str, Any]  # string values are templates
    when: tuple[Matcher, ...] = ()
    guards: Guards = field(default_factory=Guards)
    retries: int = 2
    timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class Verify:
    node: str  # template, usually "{host}"
    timeout: float
    gpus: int | None = None  # telemetry_back: GPUs that must report (None: the configured default)
    telemetry_back: bool = True
    hold: float | None = None  # no_new_xid hold period; None: no such check
    counters: tuple[str, ...] = ()  # counters_unchanged: metric names
    health_command: tuple[str, ...] = ()  # templates; exit 0 passes
    health_timeout: float = 300.0
    on_success: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class Runbook:
    name: str
    description: str
    match: tuple[Matcher, ...]
    steps: tuple[Step, ...]
    verify: Verify | None = None
    on_failure: OnFailure = "escalate"
    source: str = ""  # the file it came from

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.match) and all(m.matches(labels) for m in self.match)


@dataclass(frozen=True, slots=True)
class Subject:
    """What a plan is about: an incident (or, before incidents, one alert) and its labels."""

    key: str  # the incident key (dedup key): one run per subject and runbook
    labels: Mapping[str, str]  # the members' labels, merged; plus ``incident`` and ``incident_id``
    incident_id: int | None = None
    severity: str = "warning"
    summary: str = ""


@dataclass(frozen=True, slots=True)
class PlannedStep:
    index: int
    phase: Phase
    name: str
    action: str  # the registered action it resolves to
    params: Mapping[str, Any]  # rendered
    key: str  # idempotency key: "<run id>/<phase>/<index>"
    verdict: Verdict
    why: tuple[str, ...]
    target: str | None = None  # the node it changes, if any
    destructive: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phase": self.phase,
            "name": self.name,
            "action": self.action,
            "params": dict(self.params),
            "key": self.key,
            "verdict": self.verdict,
            "why": list(self.why),
            "target": self.target,
            "destructive": self.destructive,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    run_id: str
    runbook: str
    subject: Subject
    steps: tuple[PlannedStep, ...]
    verdict: Verdict  # the first step's that is not "go"/"skip", else "go"
    why: tuple[str, ...]  # how the runbook was chosen (match, XID policy rung)
    on_failure: OnFailure
    verify: Mapping[str, Any] = field(default_factory=dict)  # the rendered verify section, or empty
    mode: Literal["dry_run", "execute"] = "dry_run"
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "runbook": self.runbook,
            "incident": {
                "key": self.subject.key,
                "id": self.subject.incident_id,
                "summary": self.subject.summary,
                "labels": dict(self.subject.labels),
            },
            "mode": self.mode,
            "verdict": self.verdict,
            "why": list(self.why),
            "steps": [s.to_json() for s in self.steps],
            "verify": dict(self.verify),
            "on_failure": self.on_failure,
            "created_at": self.created_at,
        }
