"""The fault catalog: each kind a small class that bends the simulated fleet while it is active.

Kinds follow published GPU-cluster failure taxonomies (Llama 3's interruption breakdown, NVIDIA's
XID catalog). A fault has a target GPU (and so a rank: rank = node * gpus_per_node + gpu); ``entity``
says which identity labels the ground truth names, so scoring can match alerts to it:

- GPU faults (thermal, xid79, xid48, ecc_trend): ``{"host", "gpu_index"}``;
- straggler: ``{"job_id", "rank", "host", "gpu_index"}``;
- job faults (hang, loss_nan): ``{"job_id"}``;
- sdc (silent data corruption): ``{"host", "gpu_index"}``, and nothing in the telemetry.

Faults that disturb the training job without naming it (thermal, xid79, xid48) carry
``detail["job_id"]``, so a job-level alert (step time up, no steps) counts for them.

``repaired_by`` names the fleet actions that clear a fault (a reboot clears XID 79; a GPU reset or a
reboot clears XID 48). Such a fault ends at its scheduled time (standing for a person who fixes the
node by hand) unless a remediation drained its node first: then it lasts until the repair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from vigil.collectors.sim.state import FleetState

from vigil.events import LogEvent
from vigil.registry import Registry


@dataclass(frozen=True, slots=True)
class FaultContext:
    """Where a fault strikes and what it may draw randomness from (its own seeded stream)."""

    node: int
    gpu: int
    host: str
    rank: int | None  # the job's rank on that GPU when the fault began (None: the job is elsewhere)
    job_id: str
    cluster: str
    rng: np.random.Generator


class Fault:
    """Base fault: ``begin`` once (one-shot effects, log lines), ``apply`` every tick, ``finish`` once."""

    kind: ClassVar[str] = ""
    scope: ClassVar[str] = "gpu"  # gpu | rank | job: which labels the ground truth names
    repaired_by: ClassVar[frozenset[str]] = frozenset()  # fleet actions that clear it (reset, reboot)

    def __init__(self, ctx: FaultContext) -> None:
        self.ctx = ctx

    def begin(self, state: FleetState, now: float) -> list[LogEvent]:
        return []

    def apply(self, state: FleetState, elapsed: float) -> None:
        """Shape ``state.effects`` for this tick; ``elapsed`` is seconds since the fault began."""

    def finish(self, state: FleetState) -> None:
        return None

    def entity(self) -> dict[str, str]:
        c = self.ctx
        if self.scope == "job":
            return {"job_id": c.job_id}
        gpu = {"host": c.host, "gpu_index": str(c.gpu)}
        return {"job_id": c.job_id, "rank": str(c.rank), **gpu} if self.scope == "rank" else gpu

    def job_detail(self) -> dict[str, Any]:
        """``job_id`` (and ``rank``) for a GPU fault that disturbs the job, so job-level alerts count for it."""
        c = self.ctx
        return {} if c.rank is None else {"job_id": c.job_id, "rank": c.rank}

    def detail(self) -> dict[str, Any]:
        return {}

    def _xid_line(self, state: FleetState, now: float, code: int, message: str, process: bool = True) -> LogEvent:
        c = self.ctx
        pci = state.identity.pci[c.gpu]
        bus = pci.rsplit(".", 1)[0]  # the driver prints domain:bus:device, without the function
        # A GPU gone from the bus has no process context, and the driver says so.
        who = f"pid={int(c.rng.integers(2000, 60000))}, name=python3" if process else "pid='<unknown>', name=<unknown>"
        raw = f"NVRM: Xid (PCI:{bus}): {code}, {who}, {message}"
        return LogEvent(
            ts=now,
            host=c.host,
            cluster=c.cluster,
            kind="xid",
            code=code,
            raw=raw,
            gpu_pci=pci,
            gpu_uuid=state.identity.uuids[c.node][c.gpu],
            gpu_index=c.gpu,
        )


FAULT_KINDS: Registry[Fault] = Registry("fault kind")


def _ramp(elapsed: float, over_s: float) -> float:
    return min(1.0, max(0.0, elapsed / over_s))


@FAULT_KINDS.register("thermal")
class Thermal(Fault):
    """Blocked airflow or a failing fan: the GPU heats to ~90 °C over ~10 s and throttles its clock."""

    kind = "thermal"

    def __init__(self, ctx: FaultContext) -> None:
        super().__init__(ctx)
        self.peak = float(ctx.rng.uniform(88.0, 92.0))
        self.clock_drop = float(ctx.rng.uniform(0.30, 0.40))

    def apply(self, state: FleetState, elapsed: float) -> None:
        n, g, e = self.ctx.node, self.ctx.gpu, state.effects
        ramp = _ramp(elapsed, 10.0)
        e.temp_add[n, g] += ramp * (self.peak - state.base_temp[n, g])
        e.mem_temp_add[n, g] += ramp * 16.0
        e.clock_factor[n, g] *= 1.0 - ramp * self.clock_drop
        # The power cap is what the throttle enforces; slower clocks also draw less.
        e.power_factor[n, g] *= 1.0 - ramp * 0.15
        e.compute_factor[n, g] *= 1.0 + ramp * 0.30

    def detail(self) -> dict[str, Any]:
        return {**self.job_detail(), "peak_celsius": round(self.peak, 1)}


@FAULT_KINDS.register("xid79")
class FellOffBus(Fault):
    """XID 79: the GPU is gone from PCIe; its series vanish and a job running on it stops.

    Only a reboot brings it back: the scheduled end stands for a person power-cycling the node."""

    kind = "xid79"
    repaired_by = frozenset({"reboot"})

    def begin(self, state: FleetState, now: float) -> list[LogEvent]:
        state.present[self.ctx.node, self.ctx.gpu] = False
        return [self._xid_line(state, now, 79, "GPU has fallen off the bus.", process=False)]

    def finish(self, state: FleetState) -> None:
        state.present[self.ctx.node, self.ctx.gpu] = True

    def detail(self) -> dict[str, Any]:
        return {"xid": 79, **self.job_detail()}


@FAULT_KINDS.register("xid48")
class DoubleBitEcc(Fault):
    """XID 48: an uncorrectable (double-bit) ECC error in HBM, followed by a row remap (XID 63).

    The error is not contained: the job's process on the GPU dies, and the GPU is unusable until a
    reset activates the remapped row (the scheduled end stands for a person resetting it)."""

    kind = "xid48"
    repaired_by = frozenset({"reset", "reboot"})

    def begin(self, state: FleetState, now: float) -> list[LogEvent]:
        c = self.ctx
        state.failed[c.node, c.gpu] = True
        state.dbe[c.node, c.gpu] += float(c.rng.integers(1, 3))
        partition = int(c.rng.integers(0, 8))
        row = int(c.rng.integers(0x100, 0xFFFF))
        return [
            self._xid_line(
                state,
                now,
                48,
                "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer "
                f"at partition {partition}, subpartition 0.",
            ),
            self._xid_line(
                state, now, 63, f"Row Remapper: New row (0x{row:08x}) marked for remapping, reset gpu to activate."
            ),
        ]

    def finish(self, state: FleetState) -> None:
        state.failed[self.ctx.node, self.ctx.gpu] = False

    def detail(self) -> dict[str, Any]:
        return {"xid": 48, **self.job_detail()}


@FAULT_KINDS.register("ecc_trend")
class EccTrend(Fault):
    """Degrading HBM: correctable (single-bit) errors climb from ~5/s to ~20/s over 30 s."""

    kind = "ecc_trend"

    def apply(self, state: FleetState, elapsed: float) -> None:
        state.effects.sbe_rate[self.ctx.node, self.ctx.gpu] += 5.0 + 15.0 * _ramp(elapsed, 30.0)


@FAULT_KINDS.register("straggler")
class Straggler(Fault):
    """One slow rank (host contention, a degraded link): its compute takes 40-60 % longer."""

    kind = "straggler"
    scope = "rank"

    def __init__(self, ctx: FaultContext) -> None:
        super().__init__(ctx)
        self.slowdown = float(ctx.rng.uniform(1.4, 1.6))

    def apply(self, state: FleetState, elapsed: float) -> None:
        n, g, e = self.ctx.node, self.ctx.gpu, state.effects
        e.compute_factor[n, g] *= self.slowdown
        e.util_factor[n, g] *= 0.9  # it waits on its input pipeline a little

    def detail(self) -> dict[str, Any]:
        return {"slowdown": round(self.slowdown, 3)}


@FAULT_KINDS.register("hang")
class Hang(Fault):
    """An NCCL collective that never completes: no rank finishes a step.

    GPU utilisation stays near 100 %: NCCL's collective kernels spin-wait on the GPU, so DCGM keeps
    reporting the GPU busy (this is what real NCCL hangs look like). The hang is therefore visible
    only in the training stream, which is exactly why Vigil watches it.
    """

    kind = "hang"
    scope = "job"

    def apply(self, state: FleetState, elapsed: float) -> None:
        state.effects.job_hung = True


@FAULT_KINDS.register("loss_nan")
class LossNan(Fault):
    """Numerical divergence: the loss spikes x10 for about a second, then is NaN on every rank."""

    kind = "loss_nan"
    scope = "job"

    def apply(self, state: FleetState, elapsed: float) -> None:
        state.effects.loss_mode = "spike" if elapsed < 1.0 else "nan"


@FAULT_KINDS.register("sdc")
class SilentDataCorruption(Fault):
    """A GPU that computes wrong numbers and reports nothing: temperatures, clocks, ECC counters and
    logs stay as they were. Only answers show it: ``vigil up`` makes the node's simulated model
    server answer wrongly while the fault is on (its ground truth, read back from the topic, says
    when), and the canary has to catch it. Not in the demo schedule; name it in ``sim.faults``."""

    kind = "sdc"
