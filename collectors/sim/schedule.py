"""Which faults happen when: the configured list, or the built-in demo schedule.

The demo schedule (what ``vigil up`` runs; seconds after the simulator starts):

====  =========  ===================  ======  ==============================================
at    kind       target               for     visible as
====  =========  ===================  ======  ==============================================
25    thermal    node-01 gpu 2        60 s    temperature to ~90 °C, SM clock -35 %, steps +30 %
35    xid48      node-02 gpu 5        20 s    XID 48 + 63 log lines, DBE counter +1..2
45    ecc_trend  node-03 gpu 1        60 s    SBE counter rising 5 → 20 errors/s
50    straggler  rank 42              50 s    that rank's compute +40-60 %, step time up
60    xid79      node-05 gpu 6        25 s    XID 79 line, the GPU's series vanish, no steps
95    loss_nan   job                  15 s    loss x10 for ~1 s, then NaN on every rank
====  =========  ===================  ======  ==============================================

Then from 120 s, one round every 60 s (round k starts at 120 + 60 k), so a long run keeps showing
every kind, hang included:

- at +5 s a GPU fault, rotating xid79, thermal, ecc_trend, xid48 (25 s; an XID 79 or 48 stops the
  job, so it lasts 25 s less the job's restart cost, at least 5 s: 10 s by default);
- at +35 s a job fault, rotating hang, straggler, loss_nan (20 s).

Round targets are drawn from the seed, never the previous round's GPU or rank. The gap between the
two faults of a round means a job-level symptom (no steps, slow steps) always has one cause: a job
fault never lands while an XID has stopped the job, and a thermal fault's slower steps never overlap
a straggler's.

Targets of the fixed part are taken modulo the fleet size, so the demo also runs on small fleets.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from vigil.collectors.sim.config import FaultSpec, SimConfig, host_name

_OPENING: tuple[tuple[float, str, float, int, int], ...] = (
    # at, kind, duration, node, gpu  (node -1: a job fault; straggler given as rank 42 = node 5, gpu 2)
    (25.0, "thermal", 60.0, 1, 2),
    (35.0, "xid48", 20.0, 2, 5),
    (45.0, "ecc_trend", 60.0, 3, 1),
    (50.0, "straggler", 50.0, 5, 2),
    (60.0, "xid79", 25.0, 5, 6),
    (95.0, "loss_nan", 15.0, -1, -1),
)
GPU_ROTATION = ("xid79", "thermal", "ecc_trend", "xid48")
JOB_ROTATION = ("hang", "straggler", "loss_nan")
ROUNDS_FROM_S = 120.0
ROUND_EVERY_S = 60.0


def planned_faults(config: SimConfig) -> Iterator[FaultSpec]:
    """The faults in order of start time; endless for the demo schedule."""
    if config.faults:
        yield from sorted(config.faults, key=lambda f: f.at)
    elif config.schedule == "demo":
        yield from _opening(config)
        yield from _rounds(config)


def _opening(config: SimConfig) -> Iterator[FaultSpec]:
    world = config.nodes * config.gpus_per_node
    for at, kind, duration, node, gpu in _OPENING:
        if node < 0:
            yield FaultSpec(kind=kind, at=at, duration=duration)
        elif kind == "straggler":
            yield FaultSpec(kind=kind, at=at, duration=duration, rank=42 % world)
        else:
            host = host_name(node % config.nodes)
            yield FaultSpec(kind=kind, at=at, duration=duration, host=host, gpu_index=gpu % config.gpus_per_node)


def _rounds(config: SimConfig) -> Iterator[FaultSpec]:
    rng = np.random.default_rng([config.seed, 7])  # own stream: the schedule never shifts the noise
    world = config.nodes * config.gpus_per_node
    previous = -1
    k = 0
    while True:
        start = ROUNDS_FROM_S + ROUND_EVERY_S * k
        gpu_kind = GPU_ROTATION[k % len(GPU_ROTATION)]
        rank = _pick(rng, world, previous)
        node, gpu = divmod(rank, config.gpus_per_node)
        # A lost GPU stops the job until the fault ends and the job is relaunched (restart_cost): the
        # round's job fault at +35 s must find it running again, or no detector could see it.
        stops_job = gpu_kind in ("xid79", "xid48")
        yield FaultSpec(
            kind=gpu_kind,
            at=start + 5.0,
            duration=max(5.0, 25.0 - config.restart_cost) if stops_job else 25.0,
            host=host_name(node),
            gpu_index=gpu,
        )
        job_kind = JOB_ROTATION[k % len(JOB_ROTATION)]
        straggler = _pick(rng, world, rank) if job_kind == "straggler" else None
        yield FaultSpec(kind=job_kind, at=start + 35.0, duration=20.0, rank=straggler)
        previous = straggler if straggler is not None else rank
        k += 1


def _pick(rng: np.random.Generator, world: int, avoid: int) -> int:
    if avoid < 0 or world == 1:
        return int(rng.integers(0, world))
    choice = int(rng.integers(0, world - 1))
    return choice + 1 if choice >= avoid else choice
