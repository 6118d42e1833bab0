"""The action plugin interface: what a runbook step can make happen in the outside world.

An :class:`Action` is a named plugin with a JSON Schema for its parameters. The executor calls it in
this order, and only in this order:

1. ``check(params, idempotency_key)``: is the effect already there? (the node is drained, the job was
   requeued under this key). True: the step is recorded as done without acting. This is what makes a
   resumed run safe: a step that was running when the process died is checked before it is retried.
2. ``execute(params, idempotency_key)``: act once. The key is stable for the step (``<run>/<step>``):
   an action that cannot check leaves it with the target (an HTTP ``Idempotency-Key`` header, a Slurm
   job comment, an ``ActionRequest.request_id``) so a repeat is recognised there.
3. ``verify(params)``: did it take effect? (the node reads ``drain``). A failed verify is a failed step.

Results never raise for an outcome of the outside world: an :class:`ActionResult` says whether it
worked and, if not, whether retrying may help. A programming error still raises.

``destructive`` actions (reboot, RMA, a Kubernetes drain that evicts) need an ``approval`` guard in
every runbook step that uses them (the loader refuses a runbook without one). ``target`` names the
parameter that holds the node an action changes (blast-radius and cool-down guards count by it);
``undo`` is the action that reverses this one with the same parameters (``on_failure: rollback``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    detail: str = ""
    retryable: bool = False  # a failure worth trying again (a timeout, a 5xx, a 429)
    data: Mapping[str, Any] = field(default_factory=dict)  # what the action observed (job id, state)

    @classmethod
    def done(cls, detail: str = "", **data: Any) -> ActionResult:
        return cls(True, detail, False, data)

    @classmethod
    def failed(cls, detail: str, retryable: bool = False, **data: Any) -> ActionResult:
        return cls(False, detail, retryable, data)


class Action(Protocol):
    """One registered action. Implementations are small classes built from config by the registry."""

    name: str  # "slurm.drain"
    schema: Mapping[str, Any]  # JSON Schema (draft 2020-12) of the parameters
    destructive: bool  # a step using it must carry an approval guard
    target: str | None  # the parameter naming the node it changes (blast radius, cool-downs), or None
    undo: str | None  # the action that reverses it with the same parameters, or None

    def check(self, params: Params, idempotency_key: str) -> bool:
        """True when the effect is already in place (nothing to do)."""
        ...

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        """Act once; a repeat with the same key must not act twice where the target can tell."""
        ...

    def verify(self, params: Params) -> ActionResult:
        """Whether the effect is in place now."""
        ...


@dataclass(frozen=True, slots=True)
class Completed:
    """What a command printed and how it ended (``rc`` None: it did not finish in time)."""

    rc: int | None
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def why(self) -> str:
        if self.rc is None:
            return "timed out"
        text = (self.err or self.out).strip().splitlines()
        return f"exit {self.rc}: {text[-1][:300] if text else 'no output'}"


def run_command(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> Completed:
    """Run a command without a shell; a missing program or a timeout is an outcome, not an exception."""
    full_env = {**os.environ, **(env or {})}
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=full_env, check=False)
    except subprocess.TimeoutExpired:
        return Completed(None, "", "")
    except OSError as exc:
        return Completed(127, "", f"{argv[0]}: {exc.strerror}")
    return Completed(done.returncode, done.stdout, done.stderr)


def string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description, **extra}


def params_schema(required: Mapping[str, Any], optional: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An object schema with no other properties (a typo in a runbook's params is an error)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
        "additionalProperties": False,
    }


NODE = string("the node (Slurm NodeName / Kubernetes node name), usually '{host}'")
REASON = string("why, shown to operators (Slurm Reason, the taint's value); name the incident")
JOB = string("the job id, usually '{job_id}'")
