"""Decode + score throughput without a broker (``vigil bench`` calls ``score_throughput``).

Builds encoded ``TelemetryBatch`` records for a fleet in memory, then times the analytics hot path
exactly as the service runs it per poll: ``vigil.codec.decode`` of every record, slot lookup,
round ordering and every telemetry detector. Warm-up polls are excluded from the timing.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.engine import Engine

from vigil.catalog import GPU_ECC_DBE, GPU_ECC_SBE, GPU_POWER, GPU_TEMPERATURE, GPU_UTILIZATION
from vigil.codec import decode, encode
from vigil.events import TelemetryBatch, series_key

GPU_METRICS = (GPU_TEMPERATURE, GPU_POWER, GPU_UTILIZATION, GPU_ECC_SBE, GPU_ECC_DBE)


def fleet_series(series_per_host: int) -> tuple[str, ...]:
    """GPU series over 8 GPUs (catalog metrics, then numbered extras), as a real host sends."""
    keys = [series_key(m, {"gpu_index": str(g)}) for g in range(8) for m in GPU_METRICS]
    extra = 0
    while len(keys) < series_per_host:
        keys.append(series_key(f"gpu_extra_{extra}_ratio", {"gpu_index": str(extra % 8)}))
        extra += 1
    return tuple(keys[:series_per_host])


def build_records(
    n_hosts: int, series_per_host: int, ticks: int, ticks_per_batch: int, seed: int = 0, start: float = 1_767_225_600.0
) -> list[bytes]:
    rng = np.random.default_rng(seed)
    series = fleet_series(series_per_host)
    counters = np.array([s.partition("{")[0].endswith("_total") for s in series])
    dbe = np.array([s.startswith(GPU_ECC_DBE) for s in series])
    level = rng.uniform(30, 75, size=(n_hosts, len(series)))  # healthy: below every static rule
    records: list[bytes] = []
    for t0 in range(0, ticks, ticks_per_batch):
        n = min(ticks_per_batch, ticks - t0)
        ts = start + np.arange(t0, t0 + n, dtype=np.float64)
        for h in range(n_hosts):
            values = level[h] + rng.normal(0, 1, size=(n, len(series)))
            values[:, counters] = np.floor((t0 + np.arange(n))[:, None] * 0.05)  # a slow SBE trickle
            values[:, dbe] = 0.0
            batch = TelemetryBatch(f"node-{h:03d}", "bench", ts, series, values)
            records.append(encode(batch))
    return records


def score_throughput(
    n_hosts: int = 64,
    series_per_host: int = 90,
    ticks: int = 600,
    ticks_per_batch: int = 10,
    poll_records: int = 500,
    warmup_polls: int = 2,
) -> dict[str, Any]:
    """Samples per second through decode + score with the default detectors, one core."""
    records = build_records(n_hosts, series_per_host, ticks, ticks_per_batch)
    engine = Engine(AnalyticsConfig())
    polls = [records[i : i + poll_records] for i in range(0, len(records), poll_records)]
    samples, elapsed, detections = 0, 0.0, 0
    for i, poll in enumerate(polls):
        started = time.perf_counter()
        batches = [(0, decode(r)) for r in poll]
        found = engine.observe_telemetry([(p, b) for p, b in batches if isinstance(b, TelemetryBatch)])
        took = time.perf_counter() - started
        if i >= warmup_polls:
            elapsed += took
            samples += sum(b.sample_count for _, b in batches if isinstance(b, TelemetryBatch))
            detections += len(found)
    return {
        "workload": f"{n_hosts} hosts x {series_per_host} series x {ticks} ticks, {ticks_per_batch} ticks/record, "
        f"{poll_records} records/poll",
        "samples": samples,
        "seconds": round(elapsed, 4),
        "samples_per_s": round(samples / elapsed) if elapsed > 0 else 0,
        "detections": detections,
    }
