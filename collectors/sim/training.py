"""The simulated data-parallel training job: every GPU of the job's nodes is one rank of one job.

Synchronous data parallelism: a step ends when the slowest rank has finished its compute and the
all-reduce is done, so ``step_time = max over ranks(compute) + allreduce``. One slow or throttled
GPU therefore slows every rank, which is what makes stragglers expensive.

Placement: job node ``i`` (ranks ``i * gpus .. i * gpus + gpus - 1``) runs on physical node
``placement[i]``; at first node ``i`` itself, after a requeue whatever node the scheduler found.
The job makes progress only while every GPU it runs on is usable (on the bus, not failed, its node
up): a GPU that fell off the bus or hit an uncontained ECC error stops the whole job. It stays
stopped until it is restarted: by a requeue or restart (``relaunch``, which also moves the ranks of
a drained or rebooting node to a free node), or, when nobody acts, once its GPUs are usable again
(the person who fixed the node relaunches it). Every restart resumes from the last checkpoint
(written every ``checkpoint_every`` steps): the steps since are lost, and ``restart_cost`` seconds
pass before the first new step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from vigil.collectors.sim.config import SimConfig
from vigil.collectors.sim.state import FleetState

from vigil.events import FloatArray, TrainingStepBatch

ALLREDUCE_FRACTION = 0.15  # share of a healthy step spent in the gradient all-reduce
TOKENS_PER_RANK_STEP = 16_384  # micro-batch 4 x sequence 4096
FIRST_STEP = 10_000  # the job has been running a while: the loss is in its slow-decay phase
PEAK_LR, MIN_LR, DECAY_STEPS = 3e-4, 3e-5, 200_000
RESUME_MIN_STEP = 0.8  # a lower bound on step time / base step time, to number steps after a restart


@dataclass(slots=True)
class _PendingStep:
    compute: FloatArray  # (nodes, gpus) seconds
    step_time: float


class TrainingJob:
    def __init__(self, config: SimConfig, start: float, rng: np.random.Generator) -> None:
        self.job_id = config.job_id
        self.cluster = config.cluster
        self.base_step_time = config.base_step_time
        self.allreduce = config.base_step_time * ALLREDUCE_FRACTION
        self.base_compute = config.base_step_time - self.allreduce
        self.checkpoint_every = config.checkpoint_every
        self.restart_cost = config.restart_cost
        self.gpus = config.gpus_per_node
        self.rng = rng
        self.start = start
        self.placement = np.arange(config.nodes)  # job node -> physical node
        self.step = FIRST_STEP  # the step in progress
        self.checkpoint = FIRST_STEP  # the step a restart resumes at
        self.cursor = start  # when the step in progress began (a restart: when it may begin)
        self.stopped = False  # stopped by a fault or a requeue: waiting to be restarted
        self.unplaced = False  # requeued with no free node to run on yet
        self._checkpoint_asked = False
        self._since_checkpoint = 0.0  # seconds of the steps a restart would lose
        # Ground truth for ETTR: seconds of completed steps that still count, and what restarts cost.
        self.productive_s = 0.0
        self.lost_steps = 0
        self.restarts = 0
        self._pending: _PendingStep | None = None

    def advance(self, state: FleetState, hosts: list[str], now: float) -> list[TrainingStepBatch]:
        """The steps every rank completed up to ``now``, under the effects of the interval ending now, as
        one batch (none when no step ended)."""
        if self.unplaced and not self._place(state, now):
            return []
        if not state.usable(now)[self.placement].all():
            self._stop(now)  # a GPU it runs on is gone or failed: NCCL waits, the job dies
            return []
        if self.stopped:
            self._restart(now)  # its GPUs are usable again: whoever fixed them relaunches the job
        if state.effects.job_hung:
            # Time spent hung is lost: the step in progress restarts once the job is back.
            self.cursor = max(self.cursor, now)
            self._pending = None
            return []
        out: list[TrainingStepBatch] = []
        while True:
            if self._pending is None:
                self._pending = self._draw(state)
            end = self.cursor + self._pending.step_time
            if end > now + 1e-9:
                return [TrainingStepBatch.concat(out)] if out else []
            out.append(self._emit(state, hosts, end, self._pending))
            self._complete(end, self._pending.step_time)

    def _complete(self, end: float, step_time: float) -> None:
        self.cursor = end
        self.step += 1
        self._pending = None
        self.productive_s += step_time
        self._since_checkpoint += step_time
        if self._checkpoint_asked or (self.step - FIRST_STEP) % self.checkpoint_every == 0:
            self.checkpoint, self._since_checkpoint, self._checkpoint_asked = self.step, 0.0, False

    def relaunch(self, state: FleetState, now: float) -> None:
        """Requeue: stop the job and start it again from its checkpoint, its ranks on drained or
        rebooting nodes moved to free nodes (up, not drained, not running the job: the hot spares)."""
        self._stop(now)
        self.unplaced = True
        self._place(state, now)

    def request_checkpoint(self) -> None:
        """Write a checkpoint when the step in progress completes (before a planned drain)."""
        self._checkpoint_asked = True

    def rank_at(self, node: int, gpu: int) -> int | None:
        """The rank running on a physical GPU, None when the job does not run there."""
        where = np.flatnonzero(self.placement == node)
        return int(where[0]) * self.gpus + gpu if where.size else None

    def runs_on(self, node: int) -> bool:
        return bool((self.placement == node).any())

    def _place(self, state: FleetState, now: float) -> bool:
        up = state.up(now)
        bad = [i for i, node in enumerate(self.placement) if state.drained[node] or not up[node]]
        free = [n for n in range(state.nodes) if up[n] and not state.drained[n] and not self.runs_on(n)]
        if len(free) < len(bad):
            return False  # pending: the scheduler waits for a node
        for index, node in zip(bad, free, strict=False):
            self.placement[index] = node
        self.unplaced = False
        self._restart(now)
        return True

    def _stop(self, now: float) -> None:
        self.stopped = True
        self.cursor = max(self.cursor, now)
        self._pending = None

    def _restart(self, now: float) -> None:
        """Resume from the checkpoint after the restart cost: the steps since it are done again."""
        self.lost_steps += self.step - self.checkpoint
        self.productive_s -= self._since_checkpoint
        self.step, self._since_checkpoint = self.checkpoint, 0.0
        self.cursor = max(self.cursor, now) + self.restart_cost
        self.stopped = False
        self.restarts += 1
        self._pending = None

    def resume(self, now: float) -> None:
        """Continue at ``now`` after a restart, numbering steps beyond any an earlier run published.

        A step takes the slowest rank's compute plus the all-reduce, never under ~0.97 of the base
        step time, so counting steps of ``RESUME_MIN_STEP`` x base since ``start`` never falls below
        the real count; a step number going backwards would read as a job restarted from a checkpoint.
        """
        self.cursor = now
        self._pending = None
        self.step = FIRST_STEP + math.ceil((now - self.start) / (RESUME_MIN_STEP * self.base_step_time))
        self.checkpoint = self.step

    def _draw(self, state: FleetState) -> _PendingStep:
        where = self.placement
        noise = 1.0 + 0.008 * self.rng.standard_normal((where.size, self.gpus))
        compute = self.base_compute * state.rank_speed[where] * state.effects.compute_factor[where] * noise
        allreduce = self.allreduce * (1.0 + 0.03 * abs(float(self.rng.standard_normal())))
        return _PendingStep(compute, float(compute.max()) + allreduce)

    def _emit(self, state: FleetState, hosts: list[str], ts: float, pending: _PendingStep) -> TrainingStepBatch:
        """One step of every rank, in columns: rank r runs on job node r // gpus (physical node
        ``placement[r // gpus]``), GPU r % gpus."""
        world = pending.compute.size
        loss, grad_norm = self._loss(world, state.effects.loss_mode)
        lr = MIN_LR + 0.5 * (PEAK_LR - MIN_LR) * (1.0 + math.cos(math.pi * min(1.0, self.step / DECAY_STEPS)))
        ranks = np.arange(world, dtype=np.int64)
        same = np.ones(world)
        return TrainingStepBatch(
            job_id=self.job_id,
            cluster=self.cluster,
            hosts=tuple(hosts),
            ts=same * ts,
            rank=ranks,
            step=np.full(world, self.step, dtype=np.int64),
            host_index=self.placement[ranks // self.gpus].astype(np.int64),
            gpu_index=ranks % state.gpus,
            loss=np.asarray(loss, dtype=np.float64),
            step_time_s=same * pending.step_time,
            compute_time_s=pending.compute.reshape(-1).astype(np.float64),
            tokens_per_s=same * (TOKENS_PER_RANK_STEP / pending.step_time),
            samples_per_s=same * np.nan,
            grad_norm=same * grad_norm,
            learning_rate=same * lr,
        )

    def _loss(self, world: int, mode: str) -> tuple[list[float], float]:
        shared = 2.0 + 1.2 * math.exp(-self.step / 15_000) + 0.02 * float(self.rng.standard_normal())
        per_rank = shared + 0.05 * self.rng.standard_normal(world)  # each rank sees its own micro-batch
        grad_norm = 0.9 * math.exp(0.1 * float(self.rng.standard_normal()))
        if mode == "spike":
            return (per_rank * 10.0).tolist(), grad_norm * 20.0
        if mode == "nan":
            return [math.nan] * world, math.nan
        return per_rank.tolist(), grad_norm
