"""Actions that run a command or call a webhook: GPU reset, node reboot, RMA, the job owner, model rollback.

- ``gpu.reset {node, gpu_index}``: ``nvidia-smi --query-compute-apps`` first; only when no process
  holds the GPU, ``nvidia-smi --gpu-reset -i N``. A busy GPU is a retryable failure (the job is being
  moved off it), never a forced reset. The commands run through a configurable prefix (``["ssh",
  "{node}"]``, ``["srun", "-w", "{node}"]``; empty: here) because ``nvidia-smi`` acts on its own host.
- ``node.reboot {node}``: a configured command (``ipmitool ... chassis power cycle``) or webhook.
- ``webhook`` / ``rma.open`` / ``owner.notify`` / ``model.rollback`` / ``serving.remove``: a JSON POST
  with an ``Idempotency-Key`` header (the step's key), so a receiver that sees the repeat of a resumed
  step or of a retried attempt can drop it; 5xx, 429 and network errors are retried with backoff.
  ``model.rollback`` and ``serving.remove`` are the canary work's interface (issue 11): any rollback
  service that takes this JSON can sit behind them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from vigil.alerting.runbooks.actions.base import NODE, REASON, ActionResult, Params, params_schema, run_command, string
from vigil.alerting.runbooks.templates import render_value

GPU_INDEX = string("the GPU's index on the node, usually '{gpu_index}'", pattern="^[0-9]+$")


class GpuReset:
    name = "gpu.reset"
    schema = params_schema({"node": NODE, "gpu_index": GPU_INDEX})
    destructive = False  # refused while any process holds the GPU
    target: str | None = "node"
    undo: str | None = None

    def __init__(self, nvidia_smi: str = "nvidia-smi", prefix: Sequence[str] = (), timeout: float = 120.0) -> None:
        self.nvidia_smi, self.prefix, self.timeout = nvidia_smi, tuple(prefix), timeout

    def _argv(self, params: Params, *args: str) -> list[str]:
        return [*render_value(list(self.prefix), params), self.nvidia_smi, *args]

    def _holders(self, params: Params) -> list[str] | None:
        done = run_command(
            self._argv(params, "--query-compute-apps=pid", "--format=csv,noheader", "-i", params["gpu_index"]), 30.0
        )
        return [line.strip() for line in done.out.splitlines() if line.strip()] if done.ok else None

    def check(self, params: Params, idempotency_key: str) -> bool:
        return False  # a reset leaves no mark; repeating one on an idle GPU is harmless

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        holders = self._holders(params)
        if holders is None:
            return ActionResult.failed("nvidia-smi could not list the GPU's processes", retryable=True)
        if holders:
            return ActionResult.failed(f"GPU {params['gpu_index']} is in use by pids {', '.join(holders)}", True)
        done = run_command(self._argv(params, "--gpu-reset", "-i", params["gpu_index"]), self.timeout)
        if not done.ok:
            return ActionResult.failed(f"nvidia-smi --gpu-reset: {done.why()}", retryable=done.rc is None)
        return ActionResult.done(f"reset GPU {params['gpu_index']} on {params['node']}")

    def verify(self, params: Params) -> ActionResult:
        args = ("--query-gpu=index,pci.bus_id", "--format=csv,noheader", "-i", params["gpu_index"])
        done = run_command(self._argv(params, *args), 30.0)
        return ActionResult(done.ok, "GPU answers" if done.ok else f"GPU does not answer: {done.why()}")


class CommandAction:
    """A command (templates over the step's parameters), e.g. a reboot through the BMC."""

    def __init__(self, name: str, command: Sequence[str], destructive: bool, timeout: float = 120.0) -> None:
        self.name, self.command, self.destructive, self.timeout = name, tuple(command), destructive, timeout
        self.schema = params_schema({"node": NODE}, {"reason": REASON})
        self.target: str | None = "node"
        self.undo: str | None = None

    def check(self, params: Params, idempotency_key: str) -> bool:
        return False

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        argv = render_value(list(self.command), {**params, "key": idempotency_key})
        done = run_command(argv, self.timeout, {"VIGIL_KEY": idempotency_key})
        return ActionResult.done(f"{self.name}: ran {argv[0]}") if done.ok else ActionResult.failed(done.why())

    def verify(self, params: Params) -> ActionResult:
        return ActionResult.done("requested")


class WebhookAction:
    """A JSON POST of the parameters (and the key) to a configured URL, with ``Idempotency-Key``.

    A network error, 408, 425, 429 or 5xx is tried again here, ``attempts`` times in all with doubling
    backoff (a ``Retry-After`` in seconds is honoured, up to ``max_backoff``), every attempt with the
    same key; what is still failing after that is a retryable failure for the executor's own retries.
    Other 4xx answers are permanent."""

    def __init__(
        self,
        name: str,
        url: str,
        schema: Mapping[str, Any],
        destructive: bool,
        target: str | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name, self.url, self.schema, self.destructive = name, url, schema, destructive
        self.target, self.timeout = target, timeout
        self.attempts, self.backoff, self.max_backoff, self._sleep = max(1, attempts), backoff, max_backoff, sleep
        self.undo: str | None = None

    def check(self, params: Params, idempotency_key: str) -> bool:
        return False  # the receiver deduplicates by the Idempotency-Key header

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        body = {"action": self.name, "key": idempotency_key, "params": dict(params)}
        headers = {"Idempotency-Key": idempotency_key}
        delay, result = self.backoff, ActionResult.failed(f"{self.name}: not tried", retryable=True)
        for attempt in range(1, self.attempts + 1):
            result, wait = self._post(body, headers)
            if result.ok or not result.retryable or attempt == self.attempts:
                break
            self._sleep(min(wait if wait is not None else delay, self.max_backoff))
            delay *= 2
        return result

    def _post(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[ActionResult, float | None]:
        """One attempt; the result and the receiver's ``Retry-After`` in seconds, if it gave one."""
        try:
            response = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            return ActionResult.failed(f"{self.name}: {type(exc).__name__}", retryable=True), None
        if response.is_success:
            return ActionResult.done(f"{self.name}: HTTP {response.status_code}"), None
        retryable = response.status_code in (408, 425, 429) or response.status_code >= 500
        after = response.headers.get("Retry-After", "")
        wait = float(after) if after.isdigit() else None
        return ActionResult.failed(f"{self.name}: HTTP {response.status_code}", retryable=retryable), wait

    def verify(self, params: Params) -> ActionResult:
        return ActionResult.done("accepted")


WEBHOOK_SCHEMAS: dict[str, dict[str, Any]] = {
    "webhook": {"type": "object"},
    "node.reboot": params_schema({"node": NODE}, {"reason": REASON}),
    "rma.open": params_schema(
        {"node": NODE, "reason": REASON}, {"gpu_index": GPU_INDEX, "gpu_serial": string("the board's serial")}
    ),
    "owner.notify": params_schema({"job": string("the job id"), "message": string("what to tell the owner")}),
    "model.rollback": params_schema({"model": string("the model name")}, {"version": string("to"), "reason": REASON}),
    "serving.remove": params_schema({"endpoint": string("the serving endpoint")}, {"reason": REASON}),
}
DESTRUCTIVE = {"node.reboot", "rma.open", "model.rollback", "serving.remove"}
TARGETS = {"node.reboot": "node", "rma.open": "node"}
