"""The simulated data-parallel training job: every GPU of the fleet is one rank of one job.

Synchronous data parallelism: a step ends when the slowest rank has finished its compute and the
all-reduce is done, so ``step_time = max over ranks(compute) + allreduce``. One slow or throttled
GPU therefore slows every rank, which is what makes stragglers expensive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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
    def __init__(self, job_id: str, cluster: str, base_step_time: float, start: float, rng: np.random.Generator):
        self.job_id = job_id
        self.cluster = cluster
        self.base_step_time = base_step_time
        self.allreduce = base_step_time * ALLREDUCE_FRACTION
        self.base_compute = base_step_time - self.allreduce
        self.rng = rng
        self.start = start
        self.step = FIRST_STEP
        self.cursor = start  # when the step in progress began
        self._pending: _PendingStep | None = None

    def advance(self, state: FleetState, hosts: list[str], now: float) -> list[TrainingStepBatch]:
        """The steps every rank completed up to ``now``, under the effects of the interval ending now, as
        one batch (none when no step ended)."""
        if state.effects.job_hung:
            # Time spent hung is lost: the step in progress restarts once the job is back.
            self.cursor = now
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
            self.cursor = end
            self.step += 1
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

    def _draw(self, state: FleetState) -> _PendingStep:
        noise = 1.0 + 0.008 * self.rng.standard_normal(state.rank_speed.shape)
        compute = self.base_compute * state.rank_speed * state.effects.compute_factor * noise
        allreduce = self.allreduce * (1.0 + 0.03 * abs(float(self.rng.standard_normal())))
        return _PendingStep(compute, float(compute.max()) + allreduce)

    def _emit(self, state: FleetState, hosts: list[str], ts: float, pending: _PendingStep) -> TrainingStepBatch:
        """One step of every rank, in columns: rank r runs on host r // gpus, GPU r % gpus."""
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
            host_index=ranks // state.gpus,
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
