"""The training stage on step batches: one job's ranks and steps per record, judged per step in columns.

The same steps sent one per record (an older producer) or in batches of any size give the same
decisions; the stage's state (ranks in columns, steps waiting for their lag) survives a snapshot,
and a snapshot written before the column form still restores.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from vigil.analytics.config import HangConfig, TrainingConfig, ZScoreConfig
from vigil.analytics.models.decide import PostRule
from vigil.analytics.models.robust import RobustStat
from vigil.analytics.stages.training import TrainingStage

from vigil.events import Detection, TrainingStep, TrainingStepBatch

T0 = 1_767_225_600.0
RANKS = 16


def stage() -> TrainingStage:
    return TrainingStage(TrainingConfig(), HangConfig(), ZScoreConfig())


def job_steps(steps: int = 80, seed: int = 3) -> list[TrainingStep]:
    """16 ranks; rank 9 turns slow at step 40; the loss spikes at steps 60-62; steps 70-71 are NaN on rank 2."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(steps):
        for rank in range(RANKS):
            compute = 0.4 + rng.normal(0, 0.004) + (0.3 if rank == 9 and n >= 40 else 0.0)
            loss = 2.0 + rng.normal(0, 0.01) + (3.0 if 60 <= n <= 62 else 0.0)
            if rank == 2 and n in (70, 71):
                loss = math.nan
            out.append(
                TrainingStep(
                    T0 + n / 2,
                    "job-c",
                    rank,
                    f"node-{rank // 8:02d}",
                    n,
                    loss,
                    0.5,
                    gpu_index=rank % 8,
                    compute_time_s=compute,
                    cluster="c1",
                )
            )
    return out


def decisions(found: list[Detection]) -> list[tuple[str, str, str]]:
    return [(d.labels["alertname"], d.decision, d.labels.get("rank", "")) for d in found]


def feed(det: TrainingStage, steps: list[TrainingStep], per_record: int) -> list[Detection]:
    found: list[Detection] = []
    for i in range(0, len(steps), per_record):
        chunk = steps[i : i + per_record]
        event: Any = chunk[0] if per_record == 1 else TrainingStepBatch.from_steps(chunk)
        found += det.observe_event(event, 0, chunk[-1].ts)
    return found


EXPECTED = [
    ("TrainingStraggler", "firing", "9"),
    ("TrainingLossSpike", "firing", ""),
    ("TrainingLossNonFinite", "firing", ""),
    ("TrainingLossSpike", "resolved", ""),
    ("TrainingLossNonFinite", "resolved", ""),
]


@pytest.mark.parametrize("per_record", [RANKS, 4 * RANKS, 7, 1000, len(job_steps())])
def test_batches_of_any_size_decide_alike(per_record: int) -> None:
    found = feed(stage(), job_steps(), per_record)
    assert sorted(decisions(found)) == sorted(EXPECTED)
    by_step = feed(stage(), job_steps(), RANKS)
    # each decision at its step's time, whatever the batching (a straggler: the time of the step compared)
    assert sorted((d.ts, d.labels["alertname"], d.decision) for d in found) == sorted(
        (d.ts, d.labels["alertname"], d.decision) for d in by_step
    )


def test_single_steps_from_an_older_producer_decide_alike() -> None:
    # One difference, by design: a step with a NaN loss on some rank teaches the spike model nothing,
    # but one row at a time its finite ranks before the NaN one were already learnt (the spike
    # resolves a step or two earlier).
    singles = feed(stage(), job_steps(), 1)
    batched = feed(stage(), job_steps(), RANKS)
    assert decisions(singles) == EXPECTED
    firing = [(d.labels["alertname"], d.reason.get("step")) for d in singles if d.decision == "firing"]
    assert firing == [(d.labels["alertname"], d.reason.get("step")) for d in batched if d.decision == "firing"]


def test_the_straggler_is_named_with_its_host_and_gpu_and_both_scores() -> None:
    found = [d for d in feed(stage(), job_steps(), 64) if d.labels["alertname"] == "TrainingStraggler"]
    assert found[0].labels == {
        "alertname": "TrainingStraggler",
        "cluster": "c1",
        "job_id": "job-c",
        "rank": "9",
        "host": "node-01",
        "gpu_index": "1",
    }
    assert found[0].reason["peer_z"] > 4 and found[0].reason["own_z"] > 4
    assert 40 <= found[0].reason["step"] <= 45


def test_a_snapshot_between_batches_resumes_with_the_same_decisions() -> None:
    steps = job_steps()
    whole = feed(stage(), steps, 64)
    first = stage()
    head = feed(first, steps[: 50 * RANKS], 64)
    blob = msgpack.unpackb(msgpack.packb(first.snapshot(0), use_bin_type=True), raw=False, strict_map_key=False)
    second = stage()
    second.restore(0, blob)
    assert second.jobs["job-c"].pending.step.size == first.jobs["job-c"].pending.step.size > 0  # steps in the lag
    tail = feed(second, steps[50 * RANKS :], 64)
    assert decisions(head + tail) == decisions(whole)


def test_a_snapshot_from_before_the_column_form_restores_its_ranks() -> None:
    stat, post = RobustStat(40, 0.4, 0.003), PostRule(hist=0b111, active=True)
    old = {
        "jobs": {
            "job-c": {
                "cluster": "c1",
                "last_seen": T0,
                "loss": RobustStat(40, 2.0, 0.01).dump(),
                "spike": PostRule().dump(),
                "step_times": [0.5],
                "report_gaps": [0.5],
                "newest_step": 39,
                "newest_ts": T0 + 19.5,
                "loss_step": 39,
                "nonfinite": False,
                "finite_steps": 0,
                "hung": False,
                "ranks": [
                    [r, f"node-{r // 8:02d}", r % 8, stat.dump(), (post if r == 9 else PostRule()).dump()]
                    for r in range(RANKS)
                ],
            }
        }
    }
    det = stage()
    det.restore(0, old)
    ranks = det.jobs["job-c"].ranks
    assert ranks.rank == list(range(RANKS)) and ranks.host(9) == "node-01" and ranks.gpu[9] == 1
    assert ranks.store.col("own_n")[9] == 40 and ranks.store.col("own_mean")[9] == pytest.approx(0.4)
    assert bool(ranks.store.col("post_active")[9]) and not ranks.store.col("post_active")[8]
