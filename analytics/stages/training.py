"""Training-job signals from step batches: non-finite loss, loss spike, hang and stragglers.

Steps arrive in columns (``TrainingStepBatch``: one job's ranks and steps per message); a single
``TrainingStep`` from an older producer is read as a batch of one row. A batch is judged with a few
array operations per step, not per rank: the loss once per step (its first rank's finite loss,
scalar robust z and post-rule), the stragglers of a step in one vector update over the job's ranks
(:class:`~vigil.analytics.stages.ranks.RankTable`). Hang is judged on the injected clock, not on step
timestamps, so a job that stops reporting is noticed by the periodic tick even when nothing arrives.
The timeout is k times the longer of the median step time and the median gap between reports of new
steps (by the steps' own timestamps), so a job that reports every 50th step, or is scraped every
30 s, is not called hung between reports. A straggler must be slow against its own history AND
against the other ranks of the same step: the first alone flags a whole-job slowdown, the second
alone a rank that is always a little slower.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from vigil.analytics.config import HangConfig, TrainingConfig, ZScoreConfig
from vigil.analytics.models.decide import DecideConfig, PostRule
from vigil.analytics.models.peers import peer_deviation, peer_deviation_rows
from vigil.analytics.models.robust import RobustConfig, RobustStat
from vigil.analytics.stages.base import detection
from vigil.analytics.stages.ranks import Pending, RankTable

from vigil.events import Decision, Detection, Severity, TrainingStep, TrainingStepBatch

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class JobState:
    partition: int
    cluster: str
    last_seen: float  # event time (the service's event clock) of the latest step record
    loss: RobustStat
    spike: PostRule
    ranks: RankTable
    step_times: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    report_gaps: deque[float] = field(default_factory=lambda: deque(maxlen=32))  # s between new steps
    newest_step: int = -1
    newest_ts: float = math.nan  # the trainer's timestamp of the newest step's first report
    loss_step: int = -1  # the loss is learned once per step, not once per rank
    nonfinite: bool = False
    finite_steps: int = 0
    hung: bool = False
    pending: Pending = field(default_factory=Pending)


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch's rows sorted by (step, rank), and where each step's rows start."""

    ts: FloatArray
    step: IntArray
    rank: IntArray
    loss: FloatArray
    compute: FloatArray
    slot: IntArray
    starts: IntArray  # first row of each step


class TrainingStage:
    name = "training"
    stream = "training"

    def __init__(self, config: TrainingConfig, hang: HangConfig, zscore: ZScoreConfig) -> None:
        self.config, self.hang, self.zs = config, hang, zscore
        self.jobs: dict[str, JobState] = {}
        thr = config.straggler_threshold
        self._own = RobustConfig(
            alpha=zscore.alpha,
            threshold=thr,
            warmup=zscore.warmup,
            rel_floor=zscore.rel_floor,
            abs_floor=zscore.abs_floor,
            learn_on_anomaly=zscore.learn_on_anomaly,
            shift_after=0,  # a rank that stays slow stays slow: keep its usual time
        )
        # A straggler fires when slower than its peers AND its own past (the smaller z over the
        # threshold) in min_hits of the last window steps; it resolves after clear_after calm steps.
        self._post = DecideConfig(
            threshold=thr,
            clear_threshold=thr / 2,
            direction="up",
            min_hits=zscore.min_hits,
            window=zscore.window,
            clear_after=zscore.clear_after,
            cooldown=zscore.cooldown,
        )

    def _new_job(self, partition: int, cluster: str, now: float) -> JobState:
        return JobState(partition, cluster, now, RobustStat(), PostRule(), RankTable(self._own, self._post))

    def observe_event(self, event: Any, partition: int, now: float) -> list[Detection]:
        if isinstance(event, TrainingStep):
            event = TrainingStepBatch.from_steps([event])  # an older producer's single step
        if not isinstance(event, TrainingStepBatch) or not event.rows:
            return []
        job = self.jobs.get(event.job_id)
        if job is None:
            job = self.jobs[event.job_id] = self._new_job(partition, event.cluster, now)
        job.last_seen = max(job.last_seen, now)
        rows = self._rows(event, job)
        times = event.step_time_s[np.isfinite(event.step_time_s)]
        job.step_times.extend(times[-32:].tolist())
        out = self._cadence(event.job_id, job, rows)
        out += self._loss(event.job_id, job, rows)
        job.newest_step = max(job.newest_step, int(rows.step[-1]))
        out += self._stragglers(event, job, rows)
        return out

    def _rows(self, batch: TrainingStepBatch, job: JobState) -> Rows:
        order = np.lexsort((batch.rank, batch.step))
        slot = job.ranks.slots(batch.rank[order], batch.hosts, batch.host_index[order], batch.gpu_index[order])
        step = batch.step[order]
        starts = np.flatnonzero(np.concatenate(([True], step[1:] != step[:-1])))
        return Rows(
            batch.ts[order],
            step,
            batch.rank[order],
            batch.loss[order],
            batch.compute_time_s[order],
            slot.astype(np.int64),
            starts,
        )

    # -- reporting cadence and the end of a hang
    def _cadence(self, job_id: str, job: JobState, rows: Rows) -> list[Detection]:
        new = rows.step[rows.starts] > job.newest_step
        first_ts = np.minimum.reduceat(rows.ts, rows.starts)[new]
        for i, ts in enumerate(first_ts.tolist()):  # the first report of each new step: the reporting cadence
            if ts > job.newest_ts and not (job.hung and i == 0):  # a hang's silence is not the cadence
                job.report_gaps.append(ts - job.newest_ts)  # (NaN before the first step: no gap)
            job.newest_ts = ts if math.isnan(job.newest_ts) else max(job.newest_ts, ts)
        if not job.hung:
            return []
        job.hung = False
        first = {"action": "none", "step": int(rows.step[0])}
        return [self._job(job_id, job, "TrainingHang", "resolved", float(rows.ts[0]), 0.0, first, "steps resumed")]

    # -- loss
    def _loss(self, job_id: str, job: JobState, rows: Rows) -> list[Detection]:
        """Per step, in order: a non-finite loss on any rank opens (or keeps open) the non-finite episode;
        a new all-finite step counts towards closing it and its first rank's loss is judged for a spike."""
        finite = np.isfinite(rows.loss)
        bad = np.logical_or.reduceat(~finite, rows.starts)
        first_bad = np.minimum.reduceat(np.where(finite, rows.loss.size, np.arange(rows.loss.size)), rows.starts)
        steps = rows.step[rows.starts]
        todo = np.flatnonzero(bad | (steps > job.loss_step))
        out: list[Detection] = []
        for g in todo.tolist():
            at, step = int(rows.starts[g]), int(steps[g])
            if bad[g]:
                job.finite_steps = 0
                job.loss_step = max(job.loss_step, step)  # its finite ranks, in a later record, teach nothing
                if not job.nonfinite:
                    job.nonfinite = True
                    i = int(first_bad[g])
                    value = float(rows.loss[i])
                    reason = {
                        "loss": str(value),
                        "step": step,
                        "rank": int(rows.rank[i]),
                        "action": "restart_from_checkpoint",
                    }
                    out.append(
                        self._job(
                            job_id,
                            job,
                            "TrainingLossNonFinite",
                            "firing",
                            float(rows.ts[i]),
                            1.0,
                            reason,
                            f"loss is {value} at step {step}",
                        )
                    )
                continue
            job.loss_step = step
            if job.nonfinite:
                job.finite_steps += 1
                if job.finite_steps >= self.config.nan_clear_steps:
                    job.nonfinite = False
                    out.append(
                        self._job(
                            job_id,
                            job,
                            "TrainingLossNonFinite",
                            "resolved",
                            float(rows.ts[at]),
                            0.0,
                            {"action": "none"},
                            "loss finite again",
                        )
                    )
            out += self._spike(job_id, job, float(rows.loss[at]), step, float(rows.ts[at]))
        return out

    def _spike(self, job_id: str, job: JobState, loss: float, step: int, ts: float) -> list[Detection]:
        z = job.loss.score(loss, self.zs)
        exceed = z > self.config.spike_threshold  # only upward spikes; a falling loss is good news
        if self.zs.learn_on_anomaly or not exceed:
            job.loss.learn(loss, self.zs.alpha)
        change = job.spike.update(exceed, abs(z) < self.config.spike_threshold / 2, self.zs)
        if not change:
            return []
        reason = {
            "z": round(z, 3),
            "loss": loss,
            "step": step,
            "threshold": self.config.spike_threshold,
            "action": "check_data_and_lr",
        }
        return [
            self._job(
                job_id, job, "TrainingLossSpike", change, ts, z, reason, f"loss {loss:.4g} at step {step} (z={z:.1f})"
            )
        ]

    # -- stragglers
    def _stragglers(self, batch: TrainingStepBatch, job: JobState, rows: Rows) -> list[Detection]:
        """Steps ``step_lag`` behind the newest have all their ranks in: each is compared in one vector update."""
        timed = np.isfinite(rows.compute) & (rows.slot >= 0)
        job.pending.add(rows.step[timed], rows.slot[timed], rows.compute[timed], rows.ts[timed])
        step, slot, compute, ts = job.pending.take(job.newest_step - self.config.step_lag)
        if not step.size:
            return []
        starts = np.flatnonzero(np.concatenate(([True], step[1:] != step[:-1])))
        peer, medians = self._peers(step, compute, starts)
        out: list[Detection] = []
        for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), step.size], strict=True):
            if hi - lo < 3:
                continue  # fewer than three ranks: no peers to compare with
            now = float(ts[lo:hi].max())  # the step's time: a batch of many steps stamps each with its own
            slots = slot[lo:hi].astype(np.intp)
            own = job.ranks.own.process(slots, compute[lo:hi])
            fire, resolve = job.ranks.post.update(
                slots, np.minimum(peer[lo:hi], own), np.full(hi - lo, now), np.ones(hi - lo, dtype=bool)
            )
            for i in np.flatnonzero(fire | resolve).tolist():
                change: Decision = "firing" if fire[i] else "resolved"
                k = lo + i
                out.append(
                    self._straggle(
                        batch,
                        job,
                        int(slot[k]),
                        change,
                        float(peer[k]),
                        float(own[i]),
                        float(compute[k]),
                        float(medians[k]),
                        int(step[k]),
                        now,
                    )
                )
        return out

    def _peers(self, step: IntArray, compute: FloatArray, starts: IntArray) -> tuple[FloatArray, FloatArray]:
        """Each rank against the other ranks of its step: as a matrix when every step has the same ranks."""
        rel, floor = self.zs.rel_floor * 5, self.zs.abs_floor
        sizes = np.diff(np.append(starts, step.size))
        if sizes.size and (sizes == sizes[0]).all():
            z, med = peer_deviation_rows(compute.reshape(sizes.size, int(sizes[0])), rel_floor=rel, abs_floor=floor)
            return z.ravel(), np.repeat(med, int(sizes[0]))
        return peer_deviation(step, compute, rel_floor=rel, abs_floor=floor)

    def _straggle(
        self,
        batch: TrainingStepBatch,
        job: JobState,
        slot: int,
        change: Decision,
        peer_z: float,
        own_z: float,
        value: float,
        med: float,
        step: int,
        ts: float,
    ) -> Detection:
        ranks = job.ranks
        rank, host, gpu = ranks.rank[slot], ranks.host(slot), int(ranks.gpu[slot])
        labels = {
            "alertname": "TrainingStraggler",
            "cluster": job.cluster,
            "job_id": batch.job_id,
            "rank": str(rank),
            "host": host,
        }
        if gpu >= 0:
            labels["gpu_index"] = str(gpu)
        return detection(
            self.name,
            labels,
            change,
            ts,
            score=peer_z,
            severity="warning",
            reason={
                "peer_z": round(peer_z, 3),
                "own_z": round(own_z, 3),
                "compute_time_s": value,
                "peer_median_s": med,
                "step": step,
                "action": "check the rank's GPU and host",
            },
            summary=f"rank {rank} on {host} computes in {value:.3g}s vs peer median {med:.3g}s",
        )

    # -- hang
    def tick(self, now: float) -> list[Detection]:
        out: list[Detection] = []
        for job_id, job in list(self.jobs.items()):
            silent = now - job.last_seen
            if job.hung and silent >= self.hang.forget_after:
                del self.jobs[job_id]  # the job is gone, not hung: stop paging about it
                out.append(
                    self._job(
                        job_id,
                        job,
                        "TrainingHang",
                        "resolved",
                        now,
                        0.0,
                        {"action": "none", "silent_s": silent},
                        "job stopped reporting",
                    )
                )
                continue
            timeout = self.timeout(job)
            if not job.hung and silent > timeout:
                job.hung = True
                out.append(
                    self._job(
                        job_id,
                        job,
                        "TrainingHang",
                        "firing",
                        now,
                        silent / timeout,
                        {
                            "silent_s": round(silent, 3),
                            "timeout_s": round(timeout, 3),
                            "action": "dump stacks; restart from checkpoint",
                        },
                        f"no step for {silent:.0f}s (timeout {timeout:.0f}s)",
                    )
                )
        return out

    def timeout(self, job: JobState) -> float:
        step = statistics.median(job.step_times) if job.step_times else 0.0
        if not job.report_gaps:
            return max(self.hang.k * step, self.hang.startup_timeout)
        cadence = statistics.median(job.report_gaps)
        return max(self.hang.k * max(step, cadence), self.hang.min_timeout)

    def _job(
        self,
        job_id: str,
        job: JobState,
        alertname: str,
        decision: Decision,
        ts: float,
        score: float,
        reason: dict[str, Any],
        summary: str,
    ) -> Detection:
        severity: Severity = "critical" if alertname in ("TrainingHang", "TrainingLossNonFinite") else "warning"
        return detection(
            self.name,
            {"alertname": alertname, "cluster": job.cluster, "job_id": job_id},
            decision,
            ts,
            score=score,
            severity=severity,
            reason=reason,
            summary=summary,
        )

    # -- state per partition
    def snapshot(self, partition: int) -> dict[str, Any]:
        return {"jobs": {j: _dump(s) for j, s in self.jobs.items() if s.partition == partition}}

    def restore(self, partition: int, blob: Mapping[str, Any]) -> None:
        for job_id, raw in blob.get("jobs", {}).items():
            job = self._new_job(partition, raw["cluster"], float(raw["last_seen"]))
            _load(job, raw)
            self.jobs[job_id] = job

    def drop(self, partition: int) -> None:
        self.jobs = {j: s for j, s in self.jobs.items() if s.partition != partition}


def _dump(job: JobState) -> dict[str, Any]:
    pending = job.pending
    return {
        "cluster": job.cluster,
        "last_seen": job.last_seen,
        "loss": job.loss.dump(),
        "spike": job.spike.dump(),
        "step_times": list(job.step_times),
        "report_gaps": list(job.report_gaps),
        "newest_step": job.newest_step,
        "newest_ts": job.newest_ts,
        "loss_step": job.loss_step,
        "nonfinite": job.nonfinite,
        "finite_steps": job.finite_steps,
        "hung": job.hung,
        "rank_table": job.ranks.dump(),
        "pending": [getattr(pending, name).tolist() for name in Pending.NAMES],
    }


def _load(job: JobState, raw: Mapping[str, Any]) -> None:
    """Into a fresh job; reads snapshots from before the column form too (``ranks`` as scalar states)."""
    job.loss, job.spike = RobustStat.load(raw["loss"]), PostRule.load(raw["spike"])
    job.step_times.extend(float(v) for v in raw["step_times"])
    job.report_gaps.extend(float(v) for v in raw.get("report_gaps", ()))  # absent before the cadence
    job.newest_ts = float(raw.get("newest_ts", math.nan))
    job.newest_step, job.loss_step = int(raw["newest_step"]), int(raw["loss_step"])
    job.nonfinite, job.finite_steps, job.hung = bool(raw["nonfinite"]), int(raw["finite_steps"]), bool(raw["hung"])
    if "rank_table" in raw:
        job.ranks.load(raw["rank_table"])
        step, slot, compute, ts = raw.get("pending", ([], [], [], []))
        job.pending.add(
            np.asarray(step, dtype=np.int64),
            np.asarray(slot, dtype=np.int64),
            np.asarray(compute),
            np.asarray(ts, dtype=np.float64),
        )
    else:
        job.ranks.load_scalars(raw.get("ranks", []))
