"""The executor: runs plans step by step with their state in the alerting store.

A run moves ``running`` -> (``waiting_approval`` <-> ``running``) -> ``verifying`` -> ``returning``
-> ``succeeded``; a failure goes to ``on_failure`` (``escalated``, ``rolling_back`` then
``escalated``, or ``stopped``). Each call of :meth:`Executor.advance` does what is due for one run.

Per step, in this order (each write commits before the next thing happens):

1. judge the step again with fresh state (``planner.judge``): the guards count what other runs did
   since the plan was made. ``approval``: ask once (an approval row, a page, an audit record), wait.
2. mark it ``running`` with ``started_at`` and its attempt (the guards count it from here on);
3. ``check``: already in place? then ``succeeded`` without acting;
4. ``execute`` with the step's idempotency key, then ``verify``; record ``succeeded`` or ``failed``.

A ``kill -9`` anywhere leaves the step ``running`` or ``pending``: the restarted executor checks it
before acting again, so a completed step is never repeated, and an action that cannot check (a
webhook) repeats with the same key for its receiver to drop.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from vigil.alerting.model import ENGINE
from vigil.alerting.runbooks.actions.base import ActionResult
from vigil.alerting.runbooks.engine import Remediation
from vigil.alerting.runbooks.model import Phase, Runbook, Step, Subject
from vigil.alerting.runbooks.planner import judge, phase_steps
from vigil.alerting.runbooks.verify import judge_verify, spec_from_plan
from vigil.alerting.store import RunRow, StepRow

log = logging.getLogger(__name__)
APPROVAL_POLL = 2.0  # how often a waiting run looks for a decision (the provider also wakes the runner)


class Executor:
    def __init__(self, engine: Remediation) -> None:
        self.engine = engine
        self.store = engine.store
        self.clock = engine.parts.clock

    def advance_due(self) -> int:
        """Advance every run whose time has come; returns how many."""
        due = self.store.due_runs(self.clock.now())
        for run in due:
            self.advance(run)
        return len(due)

    def advance(self, run: RunRow) -> None:
        runbook = self.engine.parts.runbooks.get(run.runbook)
        if runbook is None:
            self._fail(run, f"runbook {run.runbook} is no longer loaded", None)
            return
        if run.state == "verifying":
            self._verify(run, runbook)
            return
        phase: Phase = {"returning": "on_success", "rolling_back": "rollback"}.get(run.state, "steps")  # type: ignore[assignment]
        for step in [s for s in self.store.steps(run.id) if s.phase == phase]:
            if step.state in ("succeeded", "skipped"):
                continue
            if not self._do(run, runbook, step):
                return  # waiting (approval, backoff, a wait step) or failed: look again later
            run = self.store.run(run.id) or run
        self._phase_done(run, runbook, phase)

    # ------------------------------------------------------------------ one step

    def _do(self, run: RunRow, runbook: Runbook, row: StepRow) -> bool:
        """Run one step; True when it is done (succeeded or skipped) and the next may follow."""
        now = self.clock.now()
        subject = Subject(run.incident_key, run.labels, run.incident_id)
        step = _runbook_step(runbook, row)
        why: tuple[str, ...]
        if step is None:  # a rollback step: the undo action with the step's own parameters
            verdict, why = "go", ("rollback",)
        else:
            engine = self.engine
            state, actions, guards = engine.state(now), engine.parts.actions, engine.config.guards
            planned = judge(step, cast(Phase, row.phase), row.idx, subject, state, actions, guards, run.id)
            verdict, why = planned.verdict, planned.why
        if row.state == "running":
            verdict = "go"  # it had started: its guards passed then (or a person approved it)
        if verdict == "skip":
            self._finish(run, row, "skipped", ActionResult.done("; ".join(why)))
            return True
        if verdict == "blocked":
            self._fail(run, f"step {row.name} blocked: {'; '.join(why)}", row)
            return False
        if verdict == "approval":
            self._ask(run, row, why)
            return False
        if run.state == "waiting_approval":
            self.store.update_run(run.id, state="running", updated_at=now)
        return self._act(run, row, why)

    def _act(self, run: RunRow, row: StepRow, why: tuple[str, ...]) -> bool:
        action = self.engine.parts.actions.get(row.action)
        now = self.clock.now()
        if row.action == "wait":
            started = row.started_at if row.started_at is not None else now
            if row.started_at is None:
                self.store.update_step(row.key, state="running", started_at=now, attempts=row.attempts + 1)
            until = started + float(row.params["seconds"])
            if now < until:
                self.store.update_run(run.id, next_at=until, updated_at=now)
                return False
            self._finish(run, row, "succeeded", ActionResult.done(f"waited {until - started:g}s"))
            return True
        self.store.update_step(row.key, state="running", started_at=row.started_at or now, attempts=row.attempts + 1)
        self.engine.audit(
            "action",
            ENGINE,
            run.id,
            {
                "step": row.key,
                "action": row.action,
                "params": dict(row.params),
                "attempt": row.attempts + 1,
                "why": list(why),
            },
        )
        result = self._call(action, row)
        if result.ok:
            self._finish(run, row, "succeeded", result)
            return True
        retries = _retries(self.engine.parts.runbooks.get(run.runbook), row)
        if result.retryable and row.attempts + 1 <= retries:
            delay = min(self.engine.config.retry_backoff * 2**row.attempts, 300.0)
            self.store.update_step(row.key, state="pending", result={"detail": result.detail, "retrying_in": delay})
            self.store.update_run(run.id, next_at=now + delay, updated_at=now)
            self.engine.audit(
                "result", ENGINE, run.id, {"step": row.key, "ok": False, "detail": result.detail, "retry_in_s": delay}
            )
            return False
        self._finish(run, row, "failed", result)
        self._fail(run, f"step {row.name} failed: {result.detail}", row)
        return False

    def _call(self, action: Any, row: StepRow) -> ActionResult:
        """check, then execute and verify. An exception from a plugin (a connection refused deep in a
        client library) is a failed, retryable attempt, logged with its traceback: it never stops the runner."""
        try:
            if action.check(row.params, row.key):
                return ActionResult.done("already in place (checked before acting)", already=True)
            result: ActionResult = action.execute(row.params, row.key)
            if not result.ok:
                return result
            verified: ActionResult = action.verify(row.params)
            if not verified.ok:
                return ActionResult.failed(f"{result.detail}; not in effect: {verified.detail}", retryable=True)
            return result
        except Exception as exc:
            log.exception("action %s raised", row.action)
            return ActionResult.failed(f"{row.action} raised {type(exc).__name__}: {exc}", retryable=True)

    def _finish(self, run: RunRow, row: StepRow, state: str, result: ActionResult) -> None:
        now = self.clock.now()
        outcome = {"ok": result.ok, "detail": result.detail, **{k: v for k, v in result.data.items()}}
        with self.store.transaction():
            self.store.update_step(row.key, state=state, finished_at=now, result=outcome)
            self.store.update_run(run.id, updated_at=now)
            self.engine.audit(
                "result", ENGINE, run.id, {"step": row.key, "action": row.action, "state": state, **outcome}
            )
        self.engine.timeline(
            run.incident_id,
            "remediation_step",
            ENGINE,
            {"run_id": run.id, "step": row.name, "action": row.action, "state": state, "detail": result.detail},
        )
        self.engine.publish(run.id)

    # ------------------------------------------------------------------ approvals

    def _ask(self, run: RunRow, row: StepRow, why: tuple[str, ...]) -> None:
        now = self.clock.now()
        asked = any(
            a["detail"].get("step") == row.key and a["state"] == "pending"
            for a in self.store.step_approvals(now - self.engine.config.guards.approval_ttl)
        )
        if not asked:
            subject = f"{row.action} {row.target or ''} for incident {run.incident_id or run.incident_key}".strip()
            detail = {
                "step": row.key,
                "run_id": run.id,
                "action": row.action,
                "params": dict(row.params),
                "why": list(why),
            }
            ttl = self.engine.config.guards.approval_ttl
            with self.store.transaction():
                approval = self.store.request_approval(
                    "remediation", subject, ENGINE, now, run.incident_id, now + ttl, detail
                )
                reason = "; ".join(why)
                self.store.update_run(run.id, state="waiting_approval", updated_at=now, detail={"reason": reason})
                self.engine.audit("approval_requested", ENGINE, run.id, {"approval": approval, **detail})
                self.engine.page(run, "approval_needed", f"Vigil remediation stopped: approve {subject}? {reason}")
            self.engine.timeline(run.incident_id, "approval_requested", ENGINE, {"approval": approval, **detail})
            self.engine.publish(run.id)
        self.store.update_run(run.id, next_at=now + APPROVAL_POLL)

    # ------------------------------------------------------------------ verify, phases, failure

    def _phase_done(self, run: RunRow, runbook: Runbook, phase: Phase) -> None:
        now = self.clock.now()
        if phase == "steps" and runbook.verify is not None and run.plan.get("verify"):
            spec = spec_from_plan(run.plan["verify"], self.engine.config.verify.gpus_per_node)
            if self.engine.parts.telemetry is not None:
                self.engine.parts.telemetry.watch(spec.node, now)
            self._move(run, "verifying", next_at=now, verify_since=now)
        elif phase == "rollback":
            self._escalate(run, "rolled back after a failure")
        else:
            self._move(run, "succeeded", next_at=None)

    def _verify(self, run: RunRow, runbook: Runbook) -> None:
        now = self.clock.now()
        spec = spec_from_plan(run.plan["verify"], self.engine.config.verify.gpus_per_node)
        telemetry = self.engine.parts.telemetry
        if telemetry is None:
            self._fail(run, "verification needs telemetry and none is watched here", None)
            return
        telemetry.watch(spec.node, run.verify_since or now)  # after a restart: the hold starts again
        outcome, why = judge_verify(spec, run.verify_since or now, now, telemetry)
        if outcome == "wait":
            self.store.update_run(run.id, next_at=now + min(5.0, max(0.5, self.engine.config.interval)))
            return
        telemetry.unwatch(spec.node)
        self.engine.audit("verify", ENGINE, run.id, {"outcome": outcome, "why": why, "node": spec.node})
        self.engine.timeline(
            run.incident_id, "remediation_verify", ENGINE, {"run_id": run.id, "outcome": outcome, "why": why}
        )
        if outcome == "pass":
            self._move(run, "returning", next_at=now)
        else:
            self._fail(run, f"verification failed: {why}", None)

    def _move(self, run: RunRow, state: str, **values: Any) -> None:
        self.store.update_run(run.id, state=state, updated_at=self.clock.now(), **values)
        self.engine.audit("run_state", ENGINE, run.id, {"state": state})
        self.engine.publish(run.id)

    def _fail(self, run: RunRow, why: str, row: StepRow | None) -> None:
        runbook = self.engine.parts.runbooks.get(run.runbook)
        policy = runbook.on_failure if runbook is not None else "escalate"
        log.warning("remediation run %s: %s (on_failure: %s)", run.id, why, policy)
        if policy == "stop":
            self._move(run, "stopped", next_at=None, detail={"reason": why})
        elif policy == "rollback" and self._plan_rollback(run):
            self._move(run, "rolling_back", next_at=self.clock.now(), detail={"reason": why})
        else:
            self._escalate(run, why)

    def _escalate(self, run: RunRow, why: str) -> None:
        with self.store.transaction():
            self._move(run, "escalated", next_at=None, detail={"reason": why})
            self.engine.page(run, "remediation_failed", f"Vigil remediation {run.runbook} needs a person: {why}")
        self.engine.timeline(run.incident_id, "remediation_escalated", ENGINE, {"run_id": run.id, "why": why})

    def _plan_rollback(self, run: RunRow) -> bool:
        """Undo steps for the completed steps that have an undo action, newest first."""
        done = [s for s in self.store.steps(run.id) if s.phase == "steps" and s.state == "succeeded"]
        undo = []
        for row in reversed(done):
            reverse = getattr(self.engine.parts.actions.get(row.action), "undo", None)
            if reverse and reverse in self.engine.parts.actions:
                undo.append((row, self.engine.parts.actions.resolve(reverse)))
        rows = [
            {
                "key": f"{run.id}/rollback/{i}",
                "run_id": run.id,
                "phase": "rollback",
                "idx": i,
                "name": f"undo-{r.name}",
                "action": name,
                "params": {k: v for k, v in r.params.items() if k in ("node", "reason")},
                "target": r.target,
                "job": r.job,
                "state": "pending",
                "attempts": 0,
                "result": {},
            }
            for i, (r, name) in enumerate(undo)
        ]
        self.store.add_steps(rows)
        return bool(rows)


def _runbook_step(runbook: Runbook, row: StepRow) -> Step | None:
    for phase, index, step in phase_steps(runbook):
        if phase == row.phase and index == row.idx:
            return step
    return None


def _retries(runbook: Runbook | None, row: StepRow) -> int:
    step = _runbook_step(runbook, row) if runbook is not None else None
    return step.retries if step is not None else 2
