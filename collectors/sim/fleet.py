"""The fleet simulator: nodes x GPUs running one data-parallel job, seeded, with injected faults.

Pure simulation, no I/O: ``tick(now, requests)`` applies the remediation actions asked for
(:mod:`vigil.collectors.sim.control`) and returns the events of that tick (:class:`SimOutput`,
action reports included); publishing is the runner's job. GPU state is numpy arrays of shape
(nodes + spares, gpus), so a tick costs a few dozen vector operations whatever the fleet size;
Python loops only per host (one batch each) and per training step record. The fault schedule is in
:mod:`vigil.collectors.sim.schedule`.

Ground truth of remediation: a fault that a reset or reboot cleared ends then, and its end event
carries ``detail["remediation"]`` (``drained_at``, ``repaired_at``, ``repaired_by``); once its node
is resumed the same fault is published again with ``returned_at`` (back in service).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from vigil.collectors.sim.config import FaultSpec, SimConfig, host_name
from vigil.collectors.sim.control import FleetControl
from vigil.collectors.sim.faults import FAULT_KINDS, Fault, FaultContext
from vigil.collectors.sim.schedule import planned_faults
from vigil.collectors.sim.state import FleetState, GpuIdentity
from vigil.collectors.sim.training import TrainingJob

from vigil import catalog as c
from vigil.events import (
    ActionReport,
    ActionRequest,
    FaultInjection,
    FloatArray,
    LogEvent,
    TelemetryBatch,
    TrainingStepBatch,
    series_key,
)

GPU_METRICS = (
    c.GPU_UTILIZATION,
    c.GPU_MEMORY_USED,
    c.GPU_SM_CLOCK,
    c.GPU_TEMPERATURE,
    c.GPU_MEMORY_TEMPERATURE,
    c.GPU_POWER,
    c.GPU_ECC_SBE,
    c.GPU_ECC_DBE,
)
HOST_METRICS = (
    c.HOST_CPU_UTILIZATION,
    c.HOST_MEMORY_USED,
    c.HOST_NETWORK_RECEIVE,
    c.HOST_NETWORK_TRANSMIT,
    c.HOST_LOAD1,
)
# PCI bus of each GPU slot in a DGX H100 (lspci), so XID lines look like the real thing.
PCI_BUSES = ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db", "1b", "2c", "3c", "5f", "9c", "ad", "bc", "dd")
GIB = float(1 << 30)
# A healthy GPU shows a rare correctable error: 64 GPUs see about one every 2-3 minutes between them.
HEALTHY_SBE_PER_S = 1e-4
_EPS = 1e-6  # float slack when comparing tick times with scheduled times


@dataclass(slots=True)
class SimOutput:
    telemetry: list[TelemetryBatch] = field(default_factory=list)
    logs: list[LogEvent] = field(default_factory=list)
    training: list[TrainingStepBatch] = field(default_factory=list)  # one per telemetry flush with steps
    faults: list[FaultInjection] = field(default_factory=list)
    reports: list[ActionReport] = field(default_factory=list)


@dataclass(slots=True)
class _Active:
    fault: Fault
    event: FaultInjection  # the start event; the end event is this with ``end`` set
    end: float | None  # None: until the simulator stops, or (drained by remediation) until repaired
    remedy: dict[str, float | str] = field(default_factory=dict)  # drained_at, repaired_at, ...

    def ended(self, at: float) -> FaultInjection:
        e = self.event
        detail = {**e.detail, "remediation": dict(self.remedy)} if self.remedy else e.detail
        return FaultInjection(e.fault_id, e.kind, e.entity, e.start, at, detail)


class FleetSimulator:
    def __init__(self, config: SimConfig, start: float) -> None:
        self.config = config
        self.start = start
        self.hosts = [host_name(i) for i in range(config.nodes + config.spare_nodes)]
        self._rng = np.random.default_rng([config.seed, 0])  # noise
        self._target_rng = np.random.default_rng([config.seed, 1])  # targets the schedule leaves open
        self.state = _initial_state(config, np.random.default_rng([config.seed, 2]))
        self.job = TrainingJob(config, start, np.random.default_rng([config.seed, 3]))
        self.control = FleetControl(config, self.state, self.job, self.hosts, self)
        self._plan = planned_faults(config)
        self._next: FaultSpec | None = next(self._plan, None)
        self._active: list[_Active] = []
        self._repaired: list[_Active] = []  # repaired by remediation, their node not yet back in service
        self._truth: list[FaultInjection] = []  # ground truth that remediation produced since the last tick
        self._seq = 0
        self._last: float | None = None
        self._pending: list[tuple[float, FloatArray]] = []  # ticks not yet in a batch
        self._pending_steps: list[TrainingStepBatch] = []  # their job's steps: batched with them
        self._pending_mask: bytes = b""
        self._columns: dict[tuple[int, bytes], tuple[tuple[str, ...], npt.NDArray[np.intp]]] = {}
        self._all_series = _full_series(config.gpus_per_node)

    @property
    def active_faults(self) -> list[FaultInjection]:
        return [a.event for a in self._active]

    def tick(self, now: float, requests: Sequence[ActionRequest] = ()) -> SimOutput:
        """One tick at ``now``; ``requests``: remediation actions that arrived since the last tick."""
        dt = self.config.interval if self._last is None else max(0.0, now - self._last)
        self._last = now
        out = SimOutput()
        # The job ran since the last tick under that tick's effects; faults and actions change things from now on.
        if self.config.training:
            self._pending_steps.extend(self.job.advance(self.state, self.hosts, now))
        self._end_due(now, out)
        self._start_due(now, out)
        out.reports.extend(self.control.act(request, now) for request in requests)
        self.control.tick(now)
        out.faults.extend(self._truth)
        self._truth = []
        self.state.effects.reset()
        for active in self._active:
            active.fault.apply(self.state, now - active.event.start)
        self.control.shape_idle(now)
        self._collect(now, self._sample(now, dt), out)
        return out

    def finish(self, now: float) -> SimOutput:
        """Stop: end every active fault at ``now`` and emit telemetry still waiting for a full batch."""
        out = SimOutput()
        for active in self._active:
            self._end(active, now, out)
        self._active = []
        out.faults.extend(self._truth)
        self._truth = []
        self._flush(out)
        return out

    # ------------------------------------------------------------------ faults

    def resume(self, now: float) -> SimOutput:
        """Pick up, at ``now``, a schedule that began at ``self.start``: a restarted simulator.

        A simulator killed and started again with the same start (``vigil sim --origin``) must not
        inject its schedule a second time. Faults are numbered in plan order, so each keeps its
        ``fault_id``: one that has ended is published again as ground truth (start and end, no
        effects; its end may have fallen while nothing was running); one still due to run begins
        again now (its one-shot effects and log lines: the earlier run's state died with it) under
        its original id and start. The job resumes at a step number no earlier run can have reached.
        """
        out = SimOutput()
        while (spec := self._due(now)) is not None:
            active = self._create(spec)
            if active.end is not None and active.end <= now + _EPS:
                e = active.event
                out.faults.append(FaultInjection(e.fault_id, e.kind, e.entity, e.start, active.end, e.detail))
            else:
                self._active.append(active)
                out.faults.append(active.event)
                out.logs.extend(active.fault.begin(self.state, now))
        self.job.resume(now)
        return out

    def _start_due(self, now: float, out: SimOutput) -> None:
        while (spec := self._due(now)) is not None:
            active = self._create(spec)
            self._active.append(active)
            out.faults.append(active.event)
            out.logs.extend(active.fault.begin(self.state, now))

    def _due(self, now: float) -> FaultSpec | None:
        """The next planned fault if it starts by ``now`` (taken off the plan), else None."""
        spec = self._next
        if spec is None or self.start + spec.at > now + _EPS:
            return None
        self._next = next(self._plan, None)
        return spec

    def _create(self, spec: FaultSpec) -> _Active:
        self._seq += 1
        fault = FAULT_KINDS.create(spec.kind, ctx=self._context(spec))
        begin = self.start + spec.at
        event = FaultInjection(
            fault_id=f"f-{self._seq:04d}-{spec.kind}",
            kind=spec.kind,
            entity=fault.entity(),
            start=begin,
            end=None,
            detail=fault.detail(),
        )
        return _Active(fault, event, begin + spec.duration if spec.duration is not None else None)

    def _end_due(self, now: float, out: SimOutput) -> None:
        still = []
        for active in self._active:
            if active.end is not None and active.end <= now + _EPS:
                self._end(active, active.end, out)
            else:
                still.append(active)
        self._active = still

    def _end(self, active: _Active, at: float, out: SimOutput) -> None:
        active.fault.finish(self.state)
        out.faults.append(active.ended(at))

    # ------------------------------------------------------------------ remediation's ground truth (control.Ledger)

    def drained(self, node: int, now: float) -> None:
        """The robot took the node: its repairable faults last until repaired, not until their scheduled end."""
        for active in self._active:
            if active.fault.ctx.node == node and active.fault.repaired_by and "drained_at" not in active.remedy:
                active.remedy["drained_at"] = now
                active.end = None

    def repaired(self, node: int, gpu: int | None, verb: str, now: float) -> None:
        still = []
        for active in self._active:
            ctx = active.fault.ctx
            if ctx.node == node and gpu in (None, ctx.gpu) and verb in active.fault.repaired_by:
                active.remedy.update(repaired_at=now, repaired_by=f"fleet.{verb}")
                active.fault.finish(self.state)
                self._truth.append(active.ended(now))
                self._repaired.append(active)
            else:
                still.append(active)
        self._active = still

    def returned(self, node: int, now: float) -> None:
        for active in [a for a in self._repaired if a.fault.ctx.node == node]:
            active.remedy["returned_at"] = now
            self._truth.append(active.ended(float(active.remedy["repaired_at"])))
            self._repaired.remove(active)

    def _context(self, spec: FaultSpec) -> FaultContext:
        gpus = self.config.gpus_per_node
        rank: int | None
        if spec.rank is not None:
            rank = spec.rank
            node, gpu = int(self.job.placement[rank // gpus]), rank % gpus  # wherever that rank runs now
        else:
            node = self.hosts.index(spec.host) if spec.host else int(self._target_rng.integers(self.config.nodes))
            gpu = spec.gpu_index if spec.gpu_index is not None else int(self._target_rng.integers(gpus))
            rank = self.job.rank_at(node, gpu)
        return FaultContext(
            node=node,
            gpu=gpu,
            host=self.hosts[node],
            rank=rank,
            job_id=self.config.job_id,
            cluster=self.config.cluster,
            rng=np.random.default_rng([self.config.seed, 4, self._seq]),
        )

    # ------------------------------------------------------------------ telemetry

    def _sample(self, now: float, dt: float) -> FloatArray:
        """One tick of every series of every host: shape (nodes, gpus * len(GPU_METRICS) + len(HOST_METRICS))."""
        s, e, rng = self.state, self.state.effects, self._rng
        shape = s.base_temp.shape
        normal = rng.standard_normal((7, *shape))
        # Slow drift: room temperature and load follow a ~10 minute cycle, a little out of phase per GPU.
        drift = 2.0 * np.sin(2.0 * math.pi * (now - self.start) / 600.0 + s.drift_phase)
        # DCGM utilisation is the share of time any kernel runs; a hung job's NCCL kernels spin, so it
        # stays high under a hang too (see faults.Hang).
        util = np.clip(0.95 + 0.012 * normal[0], 0.0, 1.0) * e.util_factor
        mem = s.base_mem_used * e.mem_factor + 0.05 * GIB * normal[1]
        clock = (1.98e9 - np.abs(normal[2]) * 1.5e7) * e.clock_factor
        temp = s.base_temp + drift + 0.3 * normal[3] + e.temp_add
        mem_temp = temp + 6.0 + 0.3 * normal[4] + e.mem_temp_add
        power = s.base_power * (1.0 + 0.015 * normal[5] + 0.005 * drift) * e.power_factor
        s.sbe += rng.poisson((HEALTHY_SBE_PER_S + e.sbe_rate) * dt)
        gpu = np.stack([util, mem, clock, temp, mem_temp, power, s.sbe, s.dbe], axis=-1)
        return np.concatenate([gpu.reshape(s.nodes, -1), self._host_sample(dt, normal[6][:, 0])], axis=1)

    def _host_sample(self, dt: float, normal: FloatArray) -> FloatArray:
        # Host series do not react to the job's state: NCCL traffic runs on the InfiniBand HCAs, not the
        # NICs counted here, and ground truth for a job fault names the job, not its hosts, so a host
        # alert during a hang could not be attributed to it.
        s = self.state
        s.net_rx += 2.0e8 * dt * (1.0 + 0.05 * np.abs(normal))  # training data in
        s.net_tx += 8.0e7 * dt * (1.0 + 0.05 * np.abs(normal))  # checkpoints and logs out
        cpu = np.clip(0.30 + 0.02 * normal, 0.0, 1.0)
        mem = 640.0 * GIB + 2.0 * GIB * normal
        load = 44.0 + 2.0 * normal  # dataloader workers
        return np.stack([cpu, mem, s.net_rx.copy(), s.net_tx.copy(), load], axis=1)

    def _collect(self, now: float, rows: FloatArray, out: SimOutput) -> None:
        mask = self.state.present.tobytes() + self.state.up(now).tobytes()
        if self._pending and mask != self._pending_mask:
            self._flush(out)  # a GPU came or went: the series tuple changes, so close the batch
        self._pending_mask = mask
        self._pending.append((now, rows))
        if len(self._pending) >= self.config.ticks_per_batch:
            self._flush(out)

    def _flush(self, out: SimOutput) -> None:
        """The pending ticks as one TelemetryBatch per host, and their steps as one TrainingStepBatch
        (as an agent and the training SDK batch: one message per host, one per job, per flush)."""
        if self._pending_steps:
            out.training.append(TrainingStepBatch.concat(self._pending_steps))
            self._pending_steps = []
        if not self._pending:
            return
        ts = np.array([t for t, _ in self._pending], dtype=np.float64)
        stacked = np.stack([rows for _, rows in self._pending])  # (ticks, nodes, series)
        cells = self.state.present.size
        present = np.frombuffer(self._pending_mask[:cells], dtype=np.bool_).reshape(self.state.present.shape)
        up = np.frombuffer(self._pending_mask[cells:], dtype=np.bool_)
        for node, host in enumerate(self.hosts):
            if not up[node]:
                continue  # rebooting: its agent is down too
            series, cols = self._series_for(node, present[node])
            values = np.ascontiguousarray(stacked[:, node, cols])
            out.telemetry.append(TelemetryBatch(host, self.config.cluster, ts, series, values))
        self._pending = []

    def _series_for(self, node: int, present: npt.NDArray[np.bool_]) -> tuple[tuple[str, ...], npt.NDArray[np.intp]]:
        key = (node, present.tobytes())
        if key not in self._columns:
            per_gpu = len(GPU_METRICS)
            keep = np.repeat(present, per_gpu)
            keep = np.concatenate([keep, np.ones(len(HOST_METRICS), dtype=np.bool_)])
            cols = np.flatnonzero(keep)
            self._columns[key] = (tuple(self._all_series[i] for i in cols), cols)
        return self._columns[key]


def _full_series(gpus: int) -> tuple[str, ...]:
    per_gpu = [series_key(m, {"gpu_index": str(g)}) for g in range(gpus) for m in GPU_METRICS]
    return (*per_gpu, *HOST_METRICS)


def _initial_state(config: SimConfig, rng: np.random.Generator) -> FleetState:
    nodes = config.nodes + config.spare_nodes
    shape = (nodes, config.gpus_per_node)
    uuids = [
        ["GPU-" + "-".join(rng.bytes(n).hex() for n in (4, 2, 2, 2, 6)) for _ in range(config.gpus_per_node)]
        for _ in range(nodes)
    ]
    return FleetState(
        nodes=nodes,
        gpus=config.gpus_per_node,
        # Slot position in the chassis airflow matters: rear GPUs run a few degrees warmer.
        base_temp=rng.uniform(60.0, 66.0, shape) + np.linspace(0.0, 3.0, config.gpus_per_node),
        base_power=rng.uniform(590.0, 660.0, shape),
        base_mem_used=rng.uniform(62.0, 68.0, shape) * GIB,
        rank_speed=1.0 + 0.01 * np.abs(rng.standard_normal(shape)),
        drift_phase=rng.uniform(0.0, 0.5, shape),
        identity=GpuIdentity(pci=[f"0000:{PCI_BUSES[g]}:00.0" for g in range(config.gpus_per_node)], uuids=uuids),
    )
