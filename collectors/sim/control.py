"""The simulated fleet obeys remediation: an ``ActionRequest`` in, its effect on the fleet, an ``ActionReport`` out.

What each ``fleet.<verb>`` does (``params`` as the fleet actions send them):

- ``drain`` node: the scheduler places nothing new there; work already on it runs until requeued.
  A drained node that runs nothing idles (utilisation ~0, clocks and power down, cooling).
- ``resume`` node: back in service (hot-spare filler work until a job needs it). Refused while it reboots.
- ``requeue`` node [job]: the job running on the node is stopped and started again from its last
  checkpoint, its ranks on drained or rebooting nodes moved to free nodes (the spares); it waits if
  none is free. Nothing happens when the job does not run on that node.
- ``restart`` job: the same for a named job, wherever it runs.
- ``checkpoint`` job: the job writes a checkpoint when its step in progress completes.
- ``reset`` node gpu_index: the GPU leaves the bus for ``gpu_reset_time`` and comes back with its
  volatile ECC counters cleared, clearing an XID 48. As ``nvidia-smi --gpu-reset`` does, it is
  refused while a process holds the GPU (the node in service, or the job still on it) and for a GPU
  that is not on the bus (XID 79 needs a reboot).
- ``reboot`` node: dark for ``reboot_time``, then every GPU back with cleared volatile counters,
  clearing XID 79 and XID 48. The node stays drained: returning it to service is a ``resume``.

An action on the wrong target (another node, another GPU, a job that is not there) changes nothing
about the fault it was meant for. Requests are idempotent by ``request_id``: one seen before is
answered with its first report and not acted on again. An unknown verb, host, GPU or job is
``rejected``; a request that may succeed later (the node is rebooting, the job is still on the GPU)
is ``failed``, which the remediation executor retries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np
from vigil.collectors.sim.config import SimConfig
from vigil.collectors.sim.state import FleetState
from vigil.collectors.sim.training import TrainingJob

from vigil.events import ActionReport, ActionRequest

Status = Literal["done", "already_done", "failed", "rejected"]
Outcome = tuple[Status, str, dict[str, Any]]
REMEMBERED_REQUESTS = 10_000  # request ids answered from memory (a retried step asks again)
IDLE = {"util": 0.0, "clock": 0.17, "power": 0.12, "mem": 0.01}  # an idle H100: ~345 MHz, ~75 W
IDLE_TEMP_C = 34.0
COOL_S = 30.0  # an idle GPU cools to IDLE_TEMP_C over this long
JOB_VERBS = frozenset({"restart", "checkpoint"})  # name a job; the target need not be a host


class Ledger(Protocol):
    """The simulator's fault ground truth, told what remediation did to the nodes."""

    def drained(self, node: int, now: float) -> None: ...

    def repaired(self, node: int, gpu: int | None, verb: str, now: float) -> None: ...

    def returned(self, node: int, now: float) -> None: ...


class FleetControl:
    def __init__(self, config: SimConfig, state: FleetState, job: TrainingJob, hosts: list[str], ledger: Ledger):
        self.config, self.state, self.job, self.ledger = config, state, job, ledger
        self.hosts = hosts
        self._index = {host: i for i, host in enumerate(hosts)}
        self._answered: OrderedDict[str, ActionReport] = OrderedDict()
        self._off_bus: dict[tuple[int, int], float] = {}  # GPUs being reset -> when they are back
        self._rebooting: dict[int, float] = {}  # nodes -> when they are up again
        verbs: dict[str, Callable[[ActionRequest, int, float], Outcome]] = {
            "drain": self._drain,
            "resume": self._resume,
            "requeue": self._requeue,
            "restart": self._restart,
            "checkpoint": self._checkpoint,
            "reset": self._reset,
            "reboot": self._reboot,
        }
        self._verbs = verbs

    def act(self, request: ActionRequest, now: float) -> ActionReport:
        earlier = self._answered.get(request.request_id)
        if earlier is not None:
            return earlier
        verb = request.action.removeprefix("fleet.")
        node = self._index.get(request.target, -1)
        if verb not in self._verbs:
            outcome: Outcome = ("rejected", f"the simulated fleet has no action {request.action!r}", {})
        elif node < 0 and verb not in JOB_VERBS:
            outcome = ("rejected", f"no host {request.target!r} in the simulated fleet", {})
        else:
            outcome = self._verbs[verb](request, node, now)
        status, detail, seen = outcome
        report = ActionReport(now, request.request_id, request.action, request.target, status, detail, seen)
        self._answered[request.request_id] = report
        if len(self._answered) > REMEMBERED_REQUESTS:
            self._answered.popitem(last=False)
        return report

    def tick(self, now: float) -> None:
        """Finish what is due (GPUs back from a reset, nodes back from a reboot); shape idle nodes."""
        s = self.state
        for (node, gpu), back in list(self._off_bus.items()):
            if back <= now:
                del self._off_bus[(node, gpu)]
                s.present[node, gpu] = True
        for node, back in list(self._rebooting.items()):
            if back <= now:
                del self._rebooting[node]
                s.present[node, :], s.failed[node, :] = True, False
                s.dbe[node, :], s.sbe[node, :] = 0.0, 0.0
                self.ledger.repaired(node, None, "reboot", back)
        busy = ~s.drained | np.array([self.job.runs_on(n) for n in range(s.nodes)])
        s.idle_since = np.where(busy | ~s.up(now), np.inf, np.minimum(s.idle_since, now))

    def shape_idle(self, now: float) -> None:
        """Idle nodes' GPUs draw little, clock down and cool (after the faults shaped this tick)."""
        s, e = self.state, self.state.effects
        idle = np.isfinite(s.idle_since)
        if not idle.any():
            return
        cooled = np.clip((now - s.idle_since[idle]) / COOL_S, 0.0, 1.0)[:, None]
        e.util_factor[idle] *= IDLE["util"]
        e.clock_factor[idle] *= IDLE["clock"]
        e.power_factor[idle] *= IDLE["power"]
        e.mem_factor[idle] *= IDLE["mem"]
        e.temp_add[idle] -= cooled * (s.base_temp[idle] - IDLE_TEMP_C)
        e.mem_temp_add[idle] -= cooled * (s.base_temp[idle] - IDLE_TEMP_C)

    # ------------------------------------------------------------------ verbs

    def _drain(self, request: ActionRequest, node: int, now: float) -> Outcome:
        if self.state.drained[node]:
            return "already_done", f"{request.target} is drained already", {"drained": True}
        self.state.drained[node] = True
        self.ledger.drained(node, now)
        where = f"{self.job.job_id} runs there until requeued" if self.job.runs_on(node) else "nothing runs there"
        return "done", f"{request.target} drained ({where})", {"drained": True}

    def _resume(self, request: ActionRequest, node: int, now: float) -> Outcome:
        if node in self._rebooting:
            return "failed", f"{request.target} is rebooting until {self._rebooting[node]:.0f}", {"drained": True}
        if not self.state.drained[node]:
            return "already_done", f"{request.target} is in service", {"drained": False}
        self.state.drained[node] = False
        self.ledger.returned(node, now)
        return "done", f"{request.target} back in service", {"drained": False}

    def _requeue(self, request: ActionRequest, node: int, now: float) -> Outcome:
        job = request.params.get("job")
        if job not in (None, self.job.job_id):
            return "rejected", f"no job {job!r} in the simulated fleet", {}
        if not self.job.runs_on(node):
            return "already_done", f"{self.job.job_id} does not run on {request.target}", {"requeued": False}
        return self._relaunch(now)

    def _restart(self, request: ActionRequest, node: int, now: float) -> Outcome:
        job = request.params.get("job")
        if job != self.job.job_id:
            return "rejected", f"no job {job!r} in the simulated fleet", {}
        return self._relaunch(now)

    def _relaunch(self, now: float) -> Outcome:
        job, from_step = self.job, self.job.step
        job.relaunch(self.state, now)
        hosts = sorted(self.hosts[n] for n in set(job.placement.tolist()))
        lost = from_step - job.checkpoint
        where = "waiting for a free node" if job.unplaced else f"on {', '.join(hosts)} in {job.restart_cost:g}s"
        detail = f"{job.job_id} requeued at step {from_step}: resumes at {job.checkpoint} ({lost} steps lost) {where}"
        return "done", detail, {"requeued": True, "checkpoint": job.checkpoint, "lost_steps": lost, "nodes": hosts}

    def _checkpoint(self, request: ActionRequest, node: int, now: float) -> Outcome:
        job = request.params.get("job")
        if job != self.job.job_id:
            return "rejected", f"no job {job!r} in the simulated fleet", {}
        self.job.request_checkpoint()
        return "done", f"{job} writes a checkpoint after step {self.job.step}", {"checkpoint_after": self.job.step}

    def _reset(self, request: ActionRequest, node: int, now: float) -> Outcome:
        gpu = _int(request.params.get("gpu_index"))
        s, host = self.state, request.target
        if gpu is None or not 0 <= gpu < s.gpus:
            return "rejected", f"{host} has no GPU {request.params.get('gpu_index')!r}", {}
        if node in self._rebooting:
            return "failed", f"{host} is rebooting", {}
        if (node, gpu) in self._off_bus:
            return "already_done", f"GPU {gpu} on {host} is being reset", {"back_at": self._off_bus[(node, gpu)]}
        if not s.present[node, gpu]:
            return "rejected", f"GPU {gpu} on {host} is not on the bus: only a reboot brings it back", {}
        if not s.drained[node]:
            return "rejected", f"GPU {gpu} on {host} is in use: drain the node first", {}
        if self.job.runs_on(node):
            return "failed", f"GPU {gpu} on {host} is in use by {self.job.job_id}: requeue it first", {}
        back = now + self.config.gpu_reset_time
        s.present[node, gpu], s.failed[node, gpu] = False, False
        s.dbe[node, gpu], s.sbe[node, gpu] = 0.0, 0.0
        self._off_bus[(node, gpu)] = back
        self.ledger.repaired(node, gpu, "reset", now)
        return "done", f"GPU {gpu} on {host} reset; back on the bus at {back:.0f}", {"back_at": back}

    def _reboot(self, request: ActionRequest, node: int, now: float) -> Outcome:
        if node in self._rebooting:
            return "already_done", f"{request.target} is rebooting", {"up_at": self._rebooting[node]}
        up_at = now + self.config.reboot_time
        self._rebooting[node] = up_at
        self.state.down_until[node] = up_at
        return "done", f"{request.target} rebooting, up at {up_at:.0f}", {"up_at": up_at}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
