"""Training-job signals from ``TrainingStep``: non-finite loss, loss spike, hang and stragglers.

Volumes are small (64 ranks at a few steps per second), so this path keeps plain Python objects
per job and rank. Hang is judged on the injected clock, not on step timestamps, so a job that stops
reporting is noticed by the periodic tick even when nothing arrives. The timeout is k times the
longer of the median step time and the median gap between reports of new steps (by the steps' own
timestamps), so a job that reports every 50th step, or is scraped every 30 s, is not called hung
between reports. A straggler must be slow
against its own history AND against the other ranks of the same step: the first alone flags a
whole-job slowdown, the second alone a rank that is always a little slower.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from vigil.analytics.config import HangConfig, TrainingConfig, ZScoreConfig
from vigil.analytics.models.decide import PostRule
from vigil.analytics.models.peers import peer_deviation
from vigil.analytics.models.robust import RobustStat
from vigil.analytics.stages.base import detection

from vigil.events import Decision, Detection, Severity, TrainingStep


@dataclass(slots=True)
class RankState:
    host: str
    gpu_index: int | None
    stat: RobustStat
    post: PostRule


@dataclass(slots=True)
class JobState:
    partition: int
    cluster: str
    last_seen: float  # event time (the service's event clock) of the latest step record
    loss: RobustStat
    spike: PostRule
    step_times: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    report_gaps: deque[float] = field(default_factory=lambda: deque(maxlen=32))  # s between new steps
    newest_step: int = -1
    newest_ts: float = math.nan  # the trainer's timestamp of the newest step's first report
    loss_step: int = -1  # the loss is learned once per step, not once per rank
    nonfinite: bool = False
    finite_steps: int = 0
    hung: bool = False
    ranks: dict[int, RankState] = field(default_factory=dict)
    pending: dict[int, dict[int, float]] = field(default_factory=dict)  # step -> rank -> compute s


class TrainingStage:
    name = "training"
    stream = "training"

    def __init__(self, config: TrainingConfig, hang: HangConfig, zscore: ZScoreConfig) -> None:
        self.config, self.hang, self.zs = config, hang, zscore
        self.jobs: dict[str, JobState] = {}

    def _new_job(self, partition: int, cluster: str, now: float) -> JobState:
        return JobState(partition, cluster, now, RobustStat(), PostRule())

    def observe_event(self, event: Any, partition: int, now: float) -> list[Detection]:
        if not isinstance(event, TrainingStep):
            return []
        job = self.jobs.get(event.job_id)
        if job is None:
            job = self.jobs[event.job_id] = self._new_job(partition, event.cluster, now)
        job.last_seen = max(job.last_seen, now)
        job.step_times.append(event.step_time_s)
        if event.step > job.newest_step:  # the first report of a new step: the job's reporting cadence
            if event.ts > job.newest_ts and not job.hung:  # a hang's silence is not the cadence (NaN: False)
                job.report_gaps.append(event.ts - job.newest_ts)
            job.newest_ts = event.ts if math.isnan(job.newest_ts) else max(job.newest_ts, event.ts)
        out: list[Detection] = []
        if job.hung:
            job.hung = False
            out.append(
                self._job(
                    event.job_id,
                    job,
                    "TrainingHang",
                    "resolved",
                    event.ts,
                    0.0,
                    {"action": "none", "step": event.step},
                    "steps resumed",
                )
            )
        out += self._loss(event, job)
        out += self._straggler(event, job)
        return out

    # -- loss
    def _loss(self, ev: TrainingStep, job: JobState) -> list[Detection]:
        out: list[Detection] = []
        if not math.isfinite(ev.loss):
            job.finite_steps = 0
            if not job.nonfinite:
                job.nonfinite = True
                out.append(
                    self._job(
                        ev.job_id,
                        job,
                        "TrainingLossNonFinite",
                        "firing",
                        ev.ts,
                        1.0,
                        {"loss": str(ev.loss), "step": ev.step, "rank": ev.rank, "action": "restart_from_checkpoint"},
                        f"loss is {ev.loss} at step {ev.step}",
                    )
                )
            return out
        if ev.step <= job.loss_step:
            return out
        job.loss_step = ev.step
        if job.nonfinite:
            job.finite_steps += 1
            if job.finite_steps >= self.config.nan_clear_steps:
                job.nonfinite = False
                out.append(
                    self._job(
                        ev.job_id,
                        job,
                        "TrainingLossNonFinite",
                        "resolved",
                        ev.ts,
                        0.0,
                        {"action": "none"},
                        "loss finite again",
                    )
                )
        z = job.loss.score(ev.loss, self.zs)
        exceed = z > self.config.spike_threshold  # only upward spikes; a falling loss is good news
        if self.zs.learn_on_anomaly or not exceed:
            job.loss.learn(ev.loss, self.zs.alpha)
        change = job.spike.update(exceed, abs(z) < self.config.spike_threshold / 2, self.zs)
        if change:
            out.append(
                self._job(
                    ev.job_id,
                    job,
                    "TrainingLossSpike",
                    change,
                    ev.ts,
                    z,
                    {
                        "z": round(z, 3),
                        "loss": ev.loss,
                        "step": ev.step,
                        "threshold": self.config.spike_threshold,
                        "action": "check_data_and_lr",
                    },
                    f"loss {ev.loss:.4g} at step {ev.step} (z={z:.1f})",
                )
            )
        return out

    # -- stragglers
    def _straggler(self, ev: TrainingStep, job: JobState) -> list[Detection]:
        rank = job.ranks.get(ev.rank)
        if rank is None:
            rank = job.ranks[ev.rank] = RankState(ev.host, ev.gpu_index, RobustStat(), PostRule())
        rank.host, rank.gpu_index = ev.host, ev.gpu_index
        if ev.compute_time_s is not None and math.isfinite(ev.compute_time_s):
            job.pending.setdefault(ev.step, {})[ev.rank] = ev.compute_time_s
        job.newest_step = max(job.newest_step, ev.step)
        out: list[Detection] = []
        for step in sorted(s for s in job.pending if s <= job.newest_step - self.config.step_lag):
            out += self._compare(ev, job, step, job.pending.pop(step))
        return out

    def _compare(self, ev: TrainingStep, job: JobState, step: int, times: dict[int, float]) -> list[Detection]:
        if len(times) < 3:
            return []
        ranks = sorted(times)
        values = np.array([times[r] for r in ranks])
        peer, medians = peer_deviation(
            np.zeros(len(ranks), dtype=np.intp), values, rel_floor=self.zs.rel_floor * 5, abs_floor=self.zs.abs_floor
        )
        med = float(medians[0])
        thr, out = self.config.straggler_threshold, []
        for r, value, peer_z in zip(ranks, values.tolist(), peer.tolist(), strict=True):
            rank = job.ranks[r]
            own_z = rank.stat.score(value, self.zs)
            exceed = peer_z > thr and own_z > thr
            if self.zs.learn_on_anomaly or own_z <= thr:
                rank.stat.learn(value, self.zs.alpha)
            change = rank.post.update(exceed, peer_z < thr / 2, self.zs)
            if change:
                out.append(self._straggle(ev, job, r, rank, change, peer_z, own_z, value, med, step))
        return out

    def _straggle(
        self,
        ev: TrainingStep,
        job: JobState,
        r: int,
        rank: RankState,
        change: Decision,
        peer_z: float,
        own_z: float,
        value: float,
        med: float,
        step: int,
    ) -> Detection:
        labels = {
            "alertname": "TrainingStraggler",
            "cluster": job.cluster,
            "job_id": ev.job_id,
            "rank": str(r),
            "host": rank.host,
        }
        if rank.gpu_index is not None:
            labels["gpu_index"] = str(rank.gpu_index)
        return detection(
            self.name,
            labels,
            change,
            ev.ts,
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
            summary=f"rank {r} on {rank.host} computes in {value:.3g}s vs peer median {med:.3g}s",
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
            self.jobs[job_id] = _load(partition, raw)

    def drop(self, partition: int) -> None:
        self.jobs = {j: s for j, s in self.jobs.items() if s.partition != partition}


def _dump(job: JobState) -> dict[str, Any]:
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
        "ranks": [[r, s.host, s.gpu_index, s.stat.dump(), s.post.dump()] for r, s in job.ranks.items()],
    }


def _load(partition: int, raw: Mapping[str, Any]) -> JobState:
    job = JobState(
        partition, raw["cluster"], float(raw["last_seen"]), RobustStat.load(raw["loss"]), PostRule.load(raw["spike"])
    )
    job.step_times.extend(float(v) for v in raw["step_times"])
    job.report_gaps.extend(float(v) for v in raw.get("report_gaps", ()))  # absent before the cadence
    job.newest_ts = float(raw.get("newest_ts", math.nan))
    job.newest_step, job.loss_step = int(raw["newest_step"]), int(raw["loss_step"])
    job.nonfinite, job.finite_steps, job.hung = bool(raw["nonfinite"]), int(raw["finite_steps"]), bool(raw["hung"])
    for r, host, gpu, stat, post in raw["ranks"]:
        job.ranks[int(r)] = RankState(host, gpu, RobustStat.load(stat), PostRule.load(post))
    return job
