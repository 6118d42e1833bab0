"""Slurm actions through ``scontrol`` (slurmrestd has no drain or requeue endpoint).

- ``slurm.drain {node, reason}``: ``State=DRAIN Reason=...``; running jobs finish, no new ones start.
- ``slurm.resume {node}``: ``State=RESUME`` (the undo of a drain).
- ``slurm.requeue {job}``: marks the job's ``Comment`` with the step's key and its restart count, then
  ``scontrol requeue`` and ``StartTime=now`` (Slurm otherwise holds a requeued job about 120 s). The
  mark is what ``check`` reads: a resumed run finds the job requeued under its key and acts no more.
- ``slurm.restart {job, hook?}``: the same requeue, then an optional hook command (tell the training
  framework to resume from its last checkpoint).
- ``slurm.signal {job, signal}``: ``scancel --signal`` (USR1 asks many training loops to checkpoint).

``scontrol`` is run as configured (``remediation.slurm.scontrol``, with ``SLURM_CONF`` in its
environment when set), with a timeout: a slurmctld that does not answer is a retryable failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.alerting.runbooks.actions.base import (
    JOB,
    NODE,
    REASON,
    ActionResult,
    Completed,
    Params,
    params_schema,
    run_command,
    string,
)
from vigil.alerting.runbooks.templates import render_value

_RETRYABLE = ("Unable to contact slurm controller", "Socket timed out", "Zero Bytes were transmitted", "timed out")


@dataclass(frozen=True, slots=True)
class Scontrol:
    """How to run Slurm's commands: the programs and their environment."""

    scontrol: str = "scontrol"
    scancel: str = "scancel"
    squeue: str = "squeue"
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 15.0

    def run(self, *args: str) -> Completed:
        return run_command([self.scontrol, *args], self.timeout, self.env)

    def cancel(self, *args: str) -> Completed:
        return run_command([self.scancel, *args], self.timeout, self.env)

    def show(self, kind: str, name: str) -> dict[str, str] | None:
        """``scontrol -o show node|job NAME`` as a dict; None when Slurm does not know it."""
        done = self.run("-o", "show", kind, name)
        if not done.ok:
            return None
        return parse_record(done.out)


def parse_record(line: str) -> dict[str, str]:
    """One ``scontrol -o show`` line: ``Key=value`` pairs where a value may hold spaces (``Reason``)."""
    out: dict[str, str] = {}
    matches = list(re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=", line.strip()))
    for index, found in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(line.strip())
        out[found.group(1)] = line.strip()[found.end() : end].strip()
    return out


def _failure(what: str, done: Completed) -> ActionResult:
    why = done.why()
    retryable = done.rc is None or any(marker in why for marker in _RETRYABLE)
    return ActionResult.failed(f"{what}: {why}", retryable=retryable)


def node_state(slurm: Scontrol, node: str) -> set[str]:
    record = slurm.show("node", node)
    return set(record.get("State", "").split("+")) if record else set()


class SlurmDrain:
    name = "slurm.drain"
    schema = params_schema({"node": NODE, "reason": REASON})
    destructive = False  # running jobs are left to finish; nothing new lands on the node
    target: str | None = "node"
    undo: str | None = "slurm.resume"

    def __init__(self, slurm: Scontrol) -> None:
        self.slurm = slurm

    def check(self, params: Params, idempotency_key: str) -> bool:
        return bool(node_state(self.slurm, params["node"]) & {"DRAIN", "DRAINED", "DRAINING"})

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        done = self.slurm.run("update", f"NodeName={params['node']}", "State=DRAIN", f"Reason={params['reason']}")
        return ActionResult.done(f"drained {params['node']}") if done.ok else _failure("scontrol update", done)

    def verify(self, params: Params) -> ActionResult:
        state = node_state(self.slurm, params["node"])
        ok = bool(state & {"DRAIN", "DRAINED", "DRAINING"})
        return ActionResult(ok, f"state {'+'.join(sorted(state)) or 'unknown'}")


class SlurmResume:
    name = "slurm.resume"
    schema = params_schema({"node": NODE}, {"reason": REASON})
    destructive = False
    target: str | None = "node"
    undo: str | None = None

    def __init__(self, slurm: Scontrol) -> None:
        self.slurm = slurm

    def check(self, params: Params, idempotency_key: str) -> bool:
        state = node_state(self.slurm, params["node"])
        return bool(state) and not state & {"DRAIN", "DRAINED", "DRAINING", "DOWN"}

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        done = self.slurm.run("update", f"NodeName={params['node']}", "State=RESUME")
        return ActionResult.done(f"resumed {params['node']}") if done.ok else _failure("scontrol update", done)

    def verify(self, params: Params) -> ActionResult:
        ok = self.check(params, "")
        return ActionResult(ok, "back in service" if ok else "still drained or down")


class SlurmRequeue:
    """``{job}``: that job; ``{node}``: every job running on the node (an XID alert names the node, not
    the job). Each job's ``Comment`` is marked with the step's key and its restart count first."""

    name = "slurm.requeue"
    schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {"job": JOB, "node": NODE},
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
    }
    destructive = False  # the job is already broken by the fault it answers; it restarts from its checkpoint
    target: str | None = None
    undo: str | None = None

    def __init__(self, slurm: Scontrol) -> None:
        self.slurm = slurm

    def _jobs(self, params: Params) -> list[str] | None:
        if "job" in params:
            return [params["job"]]
        done = run_command(
            [self.slurm.squeue, "-h", "-w", params["node"], "-t", "RUNNING,CONFIGURING", "-o", "%i"],
            self.slurm.timeout,
            self.slurm.env,
        )
        return [line.strip() for line in done.out.splitlines() if line.strip()] if done.ok else None

    def _requeued(self, job_id: str, key: str) -> bool:
        job = self.slurm.show("job", job_id)
        if job is None:
            return False
        marked = re.fullmatch(rf"vigil:{re.escape(key)}:restarts=(\d+)", job.get("Comment", ""))
        return marked is not None and int(job.get("Restarts", "0") or 0) > int(marked.group(1))

    def check(self, params: Params, idempotency_key: str) -> bool:
        if "job" in params:
            return self._requeued(params["job"], idempotency_key)
        jobs = self._jobs(params)
        return jobs == []  # nothing runs on the node any more

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        jobs = self._jobs(params)
        if jobs is None:
            return ActionResult.failed(f"squeue could not list the jobs on {params['node']}", retryable=True)
        done_jobs = []
        for job_id in jobs:
            if self._requeued(job_id, idempotency_key):
                continue
            result = self._requeue(job_id, idempotency_key)
            if not result.ok:
                return result
            done_jobs.append(job_id)
        what = ", ".join(done_jobs) or "nothing (no job ran there)"
        return ActionResult.done(f"requeued {what}", jobs=done_jobs)

    def _requeue(self, job_id: str, key: str) -> ActionResult:
        job = self.slurm.show("job", job_id)
        if job is None:
            return ActionResult.failed(f"Slurm does not know job {job_id}")
        restarts = job.get("Restarts", "0") or "0"
        steps = (
            ("update", f"JobId={job_id}", f"Comment=vigil:{key}:restarts={restarts}"),
            ("requeue", job_id),
            ("update", f"JobId={job_id}", "StartTime=now"),  # skip Slurm's ~120 s hold on a requeued job
        )
        for args in steps:
            done = self.slurm.run(*args)
            if not done.ok:
                return _failure(f"scontrol {args[0]} {job_id}", done)
        return ActionResult.done(f"requeued job {job_id}")

    def verify(self, params: Params) -> ActionResult:
        if "node" in params:
            jobs = self._jobs(params)
            return ActionResult(jobs == [], f"jobs still running there: {jobs}" if jobs else "no job runs there")
        job = self.slurm.show("job", params["job"])
        ok = job is not None and int(job.get("Restarts", "0") or 0) > 0
        return ActionResult(ok, f"job state {job.get('JobState') if job else 'unknown'}")


class SlurmRestart(SlurmRequeue):
    name = "slurm.restart"
    schema: Mapping[str, Any] = params_schema(
        {"job": JOB}, {"hook": {"type": "array", "items": {"type": "string"}, "minItems": 1}}
    )

    def __init__(self, slurm: Scontrol, hook_timeout: float = 60.0) -> None:
        super().__init__(slurm)
        self.hook_timeout = hook_timeout

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        result = super().execute(params, idempotency_key)
        hook: Sequence[str] = params.get("hook") or ()
        if not result.ok or not hook:
            return result
        hook = render_value(list(hook), {"job": params["job"], "key": idempotency_key})
        done = run_command(list(hook), self.hook_timeout, {"VIGIL_JOB": params["job"], "VIGIL_KEY": idempotency_key})
        if not done.ok:
            return ActionResult.failed(f"job {params['job']} requeued; restart hook failed: {done.why()}")
        return ActionResult.done(f"{result.detail}; restart hook ran", **dict(result.data))


class SlurmSignal:
    name = "slurm.signal"
    schema = params_schema({"job": JOB}, {"signal": string("a signal name, USR1 by default", pattern="^[A-Z0-9]+$")})
    destructive = False
    target: str | None = None
    undo: str | None = None

    def __init__(self, slurm: Scontrol) -> None:
        self.slurm = slurm

    def check(self, params: Params, idempotency_key: str) -> bool:
        return False  # a signal leaves no trace to read back; sending it twice asks for one more checkpoint

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        signal = params.get("signal", "USR1")
        done = self.slurm.cancel(f"--signal={signal}", "--full", params["job"])
        return ActionResult.done(f"sent {signal} to job {params['job']}") if done.ok else _failure("scancel", done)

    def verify(self, params: Params) -> ActionResult:
        return ActionResult.done("signal sent")


def slurm_actions(slurm: Scontrol) -> list[Any]:
    return [SlurmDrain(slurm), SlurmResume(slurm), SlurmRequeue(slurm), SlurmRestart(slurm), SlurmSignal(slurm)]


__all__ = ["Scontrol", "parse_record", "slurm_actions"]
