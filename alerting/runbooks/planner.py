"""The pure planning engine: (incident, runbook, current state) -> a plan, each step with its verdict.

Nothing here reads a clock, a store or the cluster: the caller hands in a :class:`State` (the steps
that changed nodes lately, the approvals given, the cluster's size, now), so a dry run costs nothing
and the executor asks the same question again, with fresh state, right before each step.

A step's verdict, in this order:

1. ``skip``: its ``when`` matchers do not hold for the incident;
2. ``blocked``: a parameter names a label the incident lacks, the action has no backend here, the
   parameters fail the action's schema, or a person rejected it;
3. ``go``: a person approved it (an approval overrides the breaker, the rate limit and the cool-down:
   that is what the page asked for);
4. ``approval``: the step's guard says ``required``; or ``auto`` and the policy's allowance for the
   target is used up; or the blast-radius breaker (nodes changed within the window, cluster-wide and
   per job), a rate limit or a cool-down would be exceeded. The run stops there and pages a person;
5. ``go`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
from vigil.alerting.runbooks.actions import ActionSet
from vigil.alerting.runbooks.config import GuardsConfig
from vigil.alerting.runbooks.model import Phase, Plan, PlannedStep, Runbook, Step, Subject, Verdict
from vigil.alerting.runbooks.policy import XidPolicy
from vigil.alerting.runbooks.templates import MissingLabel, render, render_value

ApprovalState = Literal["pending", "approved", "rejected", "expired"]


@dataclass(frozen=True, slots=True)
class Acted:
    """A step that changed (or is changing) something: what the guards count."""

    action: str  # the registered action name
    target: str | None  # the node
    job: str | None
    at: float
    run_id: str


@dataclass(frozen=True, slots=True)
class Approval:
    state: ApprovalState
    by: str | None = None


@dataclass(frozen=True, slots=True)
class State:
    now: float
    cluster_nodes: int
    recent: tuple[Acted, ...] = ()
    approvals: Mapping[str, Approval] = field(default_factory=dict)  # step key -> the latest decision


def choose_runbook(
    subject: Subject, runbooks: Mapping[str, Runbook], policy: XidPolicy, counts: Mapping[float, int]
) -> tuple[Runbook | None, tuple[str, ...]]:
    """The XID policy first (for an incident with an ``xid`` label it knows), then the first runbook by
    name whose ``match`` holds. ``counts``: the incidents of this XID on this GPU within each window."""
    code = subject.labels.get("xid", "")
    rule = policy.rule(int(code)) if code.isdigit() else None
    if rule is not None:
        name, why = rule.choose(counts)
        if name in runbooks:
            return runbooks[name], (f"XID {code} policy: {why} -> runbook {name}",)
        return None, (f"XID {code} policy names runbook {name!r}, which is not loaded",)
    for name in sorted(runbooks):
        if runbooks[name].matches(subject.labels):
            matchers = ", ".join(str(m) for m in runbooks[name].match)
            return runbooks[name], (f"runbook {name} matches {matchers}",)
    return None, ("no runbook matches",)


def plan(
    subject: Subject,
    runbook: Runbook,
    state: State,
    actions: ActionSet,
    guards: GuardsConfig,
    run_id: str,
    why: Sequence[str] = (),
    mode: Literal["dry_run", "execute"] = "dry_run",
) -> Plan:
    """Every step of ``runbook`` judged in order; a step that would go counts for the steps after it."""
    steps: list[PlannedStep] = []
    for phase, index, step in phase_steps(runbook):
        planned = judge(step, phase, index, subject, state, actions, guards, run_id)
        steps.append(planned)
        if planned.verdict == "go" and planned.target is not None:
            job = subject.labels.get("job_id") or None
            acted = Acted(planned.action, planned.target, job, state.now, run_id)
            state = State(state.now, state.cluster_nodes, (*state.recent, acted), state.approvals)
    blocking = next((s for s in steps if s.verdict in ("approval", "blocked")), None)
    verdict: Verdict = blocking.verdict if blocking is not None else "go"
    return Plan(
        run_id=run_id,
        runbook=runbook.name,
        subject=subject,
        steps=tuple(steps),
        verdict=verdict,
        why=tuple(why),
        on_failure=runbook.on_failure,
        verify=_verify_json(runbook, subject),
        mode=mode,
        created_at=state.now,
    )


def phase_steps(runbook: Runbook) -> list[tuple[Phase, int, Step]]:
    out: list[tuple[Phase, int, Step]] = [("steps", i, s) for i, s in enumerate(runbook.steps)]
    if runbook.verify is not None:
        out += [("on_success", i, s) for i, s in enumerate(runbook.verify.on_success)]
    return out


def step_key(run_id: str, phase: Phase, index: int) -> str:
    return f"{run_id}/{phase}/{index}"


def judge(
    step: Step,
    phase: Phase,
    index: int,
    subject: Subject,
    state: State,
    actions: ActionSet,
    guards: GuardsConfig,
    run_id: str,
) -> PlannedStep:
    key = step_key(run_id, phase, index)

    def out(
        verdict: Verdict, *why: str, name: str = step.action, params: Any = None, target: Any = None
    ) -> PlannedStep:
        destructive = name in actions and actions.get(name).destructive
        return PlannedStep(index, phase, step.name, name, params or {}, key, verdict, why, target, destructive)

    if step.when and not all(m.matches(subject.labels) for m in step.when):
        return out("skip", "when " + ", ".join(str(m) for m in step.when) + " does not hold")
    if step.action not in actions:
        return out("blocked", f"action {step.action} has no backend configured here")
    name = actions.resolve(step.action)
    action = actions.get(name)
    try:
        params = render_value(dict(step.params), subject.labels)
    except MissingLabel as exc:
        return out("blocked", f"cannot fill the parameters: {exc}", name=name)
    errors = [e.message for e in jsonschema.Draft202012Validator(action.schema).iter_errors(params)]
    if errors:
        return out("blocked", f"parameters invalid for {name}: {errors[0]}", name=name, params=params)
    target = str(params[action.target]) if action.target and action.target in params else None
    verdict, why = _guards(step, phase, name, target, subject, state, guards, key)
    return out(verdict, *why, name=name, params=params, target=target)


def _guards(
    step: Step,
    phase: Phase,
    name: str,
    target: str | None,
    subject: Subject,
    state: State,
    guards: GuardsConfig,
    key: str,
) -> tuple[Verdict, tuple[str, ...]]:
    decided = state.approvals.get(key)
    if decided is not None and decided.state == "rejected":
        return "blocked", (f"rejected by {decided.by}",)
    if decided is not None and decided.state == "approved":
        return "go", (f"approved by {decided.by}",)
    trips = []
    if step.guards.approval == "required":
        trips.append("a person approves this step")
    elif step.guards.approval == "auto" and step.guards.auto is not None:
        auto = step.guards.auto
        mine = [a for a in state.recent if a.action == name and a.target == target]
        used = sum(1 for a in mine if state.now - a.at < auto.window)
        if used >= auto.max:
            trips.append(f"auto-approval used up: {used} of {auto.max} on {target} within {_words(auto.window)}")
    if target is not None and step.guards.blast_radius and phase == "steps":
        trips += _blast_radius(target, subject.labels.get("job_id") or None, state, guards)
    trips += _rate_and_cooldown(name, target, state, guards, key.rsplit("/", 2)[0], step.guards.cooldown)
    if trips:
        return "approval", tuple(trips)
    if step.guards.approval == "auto":
        return "go", ("approved by policy (auto-approval allowance)",)
    return "go", ("guards pass",)


def _blast_radius(target: str, job: str | None, state: State, guards: GuardsConfig) -> list[str]:
    radius = guards.blast_radius
    window = [a for a in state.recent if a.target is not None and state.now - a.at < radius.window]
    nodes = {a.target for a in window}
    trips = []
    if target not in nodes:
        limit = max(1, int(radius.max_fraction * state.cluster_nodes))
        if len(nodes) + 1 > limit:
            trips.append(
                f"blast radius: {len(nodes)} of {state.cluster_nodes} nodes already changed within "
                f"{_words(radius.window)}; the limit is {limit} ({radius.max_fraction:.0%})"
            )
    if job is not None:
        job_nodes = {a.target for a in window if a.job == job}
        if target not in job_nodes and len(job_nodes) + 1 > radius.max_per_job:
            trips.append(
                f"blast radius: job {job} already has {len(job_nodes)} node(s) changed; limit {radius.max_per_job}"
            )
    return trips


def _rate_and_cooldown(
    name: str, target: str | None, state: State, guards: GuardsConfig, run_id: str, cooldown: float | None
) -> list[str]:
    trips = []
    limit = guards.rate_limits.get(name)
    if limit is not None:
        used = sum(1 for a in state.recent if a.action == name and state.now - a.at < limit.window)
        if used >= limit.max:
            trips.append(f"rate limit: {used} {name} within {_words(limit.window)} (limit {limit.max})")
    pause = cooldown if cooldown is not None else guards.cooldowns.get(name)
    if pause and target is not None:
        last = max(
            (a.at for a in state.recent if a.action == name and a.target == target and a.run_id != run_id),
            default=None,
        )
        if last is not None and state.now - last < pause:
            trips.append(f"cool-down: {name} on {target} {_words(state.now - last)} ago (cool-down {_words(pause)})")
    return trips


def _verify_json(runbook: Runbook, subject: Subject) -> dict[str, Any]:
    verify = runbook.verify
    if verify is None:
        return {}
    try:
        node = render(verify.node, subject.labels)
        command = render_value(list(verify.health_command), subject.labels)
    except MissingLabel as exc:
        node, command = f"<{exc}>", []
    return {
        "node": node,
        "timeout_s": verify.timeout,
        "telemetry_back": verify.telemetry_back,
        "gpus": verify.gpus,
        "no_new_xid_hold_s": verify.hold,
        "counters_unchanged": list(verify.counters),
        "health_command": command,
        "health_timeout_s": verify.health_timeout,
    }


def _words(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"
