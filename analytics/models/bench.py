"""Throughput and state size of the detector library (``vigil bench detectors`` prints these).

Workload: ``series`` independent telemetry series x ``ticks`` ticks (default 10,000 x 1,000),
generated from a fixed seed: each series a level and a noise scale of its own, slow AR(1)
wander, 0.5% missing samples, 0.1% spikes and 1% of series stepping to a new level for good
(so the post-rule and the level-shift logic do their work). It is consumed the way the service
consumes telemetry, ``chunk`` ticks per message, each tick one round over every series.

Per model, one figure: samples per second on one core (numpy elementwise work is single-threaded,
and BLAS/OpenMP/torch pools are limited to one thread while measuring), the decision layer
included; the median of ``repeats`` runs from a cold state. Models with a bank form run over the
whole array; per-stream (multivariate, per host) models run one instance over one host's series
(``series_per_host`` columns) for at most ``stream_rows`` rows and say so in their note.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # comes with scikit-learn
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.engine import Engine
from vigil.analytics.models import registry
from vigil.analytics.models.base import Detector
from vigil.analytics.models.columns import ArrayStore
from vigil.analytics.models.decide import DecideBank, DecideConfig, Decider

from vigil import catalog
from vigil.events import TelemetryBatch, series_key
from vigil.progress import Progress, Silent

FloatArray = npt.NDArray[np.float64]
T0 = 1_767_225_600.0
# The live stages see a host's message as its GPUs' usual series: 8 GPUs x these 10 metrics = 80.
GPU_METRICS = (
    catalog.GPU_UTILIZATION,
    catalog.GPU_MEMORY_USED,
    catalog.GPU_SM_CLOCK,
    catalog.GPU_MEM_CLOCK,
    catalog.GPU_TEMPERATURE,
    catalog.GPU_MEMORY_TEMPERATURE,
    catalog.GPU_POWER,
    catalog.GPU_ECC_SBE,
    catalog.GPU_ECC_DBE,
    catalog.GPU_PCIE_REPLAY,
)
LIVE_STAGES = {
    "zscore": "robust_z bank + decision layer over every series",
    "peers": "each GPU's temperature, memory temperature, SM clock and power against its 7 siblings "
    "(busy gate, usual-offset bank, decision layer); the other 6 metrics are passed over",
}


def workload(series: int, ticks: int, seed: int = 0) -> FloatArray:
    """(ticks, series) float64 values; see the module docstring."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(20, 300, series)
    noise = level * rng.uniform(0.005, 0.03, series)
    Y = rng.standard_normal((ticks, series))
    for t in range(1, ticks):  # AR(1): neighbouring samples are correlated, as real telemetry is
        Y[t] = 0.7 * Y[t - 1] + 0.714 * Y[t]
    Y *= noise
    Y += level
    Y[rng.random(Y.shape) < 0.001] += 20 * noise.max()
    steps = rng.choice(series, size=max(1, series // 100), replace=False)
    for j, at in zip(steps.tolist(), rng.integers(ticks // 4, ticks, steps.size).tolist(), strict=True):
        Y[at:, j] += 15 * noise[j]
    Y[rng.random(Y.shape) < 0.005] = np.nan
    return Y


@contextmanager
def one_thread() -> Iterator[None]:
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else 0
    with threadpool_limits(limits=1):
        if torch is not None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(threads)


def _decide_config(cls: type[Detector]) -> DecideConfig:
    return DecideConfig(calibration="none" if cls.calibrated else "running")


def run_bank(name: str, Y: FloatArray, chunk: int) -> dict[str, Any]:
    """One cold pass of a bank model + decision layer over Y; returns seconds, bytes, decisions."""
    cls = registry.model_class(name)
    series = Y.shape[1]
    store = ArrayStore(series)
    bank = cls.make_bank({}, store)
    if bank is None:
        raise ValueError(f"{name} has no bank form")
    decide = DecideBank(_decide_config(cls), store, prefix="d_")
    slots = np.arange(series, dtype=np.intp)
    fired = 0
    started = time.perf_counter()
    for lo in range(0, len(Y), chunk):
        block = Y[lo : lo + chunk]  # one message's worth of ticks
        for i, y in enumerate(block):
            z = bank.process(slots, y)
            fire, _ = decide.update(slots, z, np.full(series, T0 + lo + i), np.isfinite(y))
            fired += int(np.count_nonzero(fire))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "state_bytes_per_series": store.nbytes_per_series(bank.columns() + decide.columns()),
        "firings": fired,
    }


def host_keys(series_per_host: int) -> tuple[str, ...]:
    """A host's series keys: GPUs x :data:`GPU_METRICS`, as many GPUs as ``series_per_host`` allows."""
    gpus = max(1, series_per_host // len(GPU_METRICS))
    keys = tuple(series_key(m, {"gpu_index": str(g)}) for g in range(gpus) for m in GPU_METRICS)
    return keys[:series_per_host]


def run_live_stage(stage: str, Y: FloatArray, chunk: int, series_per_host: int) -> dict[str, Any]:
    """One of the service's telemetry stages itself (slot lookup, round ordering, per-GPU alerts)."""
    keys = host_keys(series_per_host)
    hosts = Y.shape[1] // len(keys)
    engine = Engine(AnalyticsConfig(detectors=[stage]))
    found = 0
    started = time.perf_counter()
    for lo in range(0, len(Y), chunk):
        ts = T0 + np.arange(lo, min(lo + chunk, len(Y)), dtype=np.float64)
        poll = [
            (
                0,
                TelemetryBatch(
                    f"node-{h:04d}", "bench", ts, keys, Y[lo : lo + chunk, h * len(keys) : (h + 1) * len(keys)]
                ),
            )
            for h in range(hosts)
        ]
        found += len(engine.observe_telemetry(poll))
    seconds = time.perf_counter() - started
    det = engine.telemetry[0]
    return {
        "seconds": seconds,
        "samples": hosts * len(keys) * len(Y),
        "state_bytes_per_series": sum(engine.slots.col(c).itemsize for c in det.columns()),
        "detections": found,
    }


def run_stream(name: str, X: FloatArray, chunk: int) -> dict[str, Any]:
    """One per-host instance over X (rows = ticks, columns = the host's series), chunk rows at a time."""
    cls = registry.model_class(name)
    model = registry.create(name, features=[f"s{j}" for j in range(X.shape[1])])
    decider = Decider(_decide_config(cls), detector=name)
    fired = 0
    started = time.perf_counter()
    for lo in range(0, len(X), chunk):
        scores = model.process_many(X[lo : lo + chunk])
        for i, s in enumerate(scores.tolist()):
            fired += decider.update(s, T0 + lo + i) == "firing"
    seconds = time.perf_counter() - started
    state = len(msgpack.packb(model.state(), use_bin_type=True))
    return {"seconds": seconds, "state_bytes": state, "firings": fired}


def detector_figures(
    series: int = 10_000,
    ticks: int = 1_000,
    chunk: int = 10,
    repeats: int = 3,
    series_per_host: int = 80,
    stream_rows: int = 2_000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    progress = progress or Silent()
    Y = workload(series, ticks)
    rows: list[dict[str, Any]] = []
    names = registry.names()
    progress.phase(f"{len(names)} models", len(names))
    with one_thread():
        for name in names:
            if rows:
                progress.advance(1, f"{rows[-1]['name']}: {rows[-1]['samples_per_s']:,} samples/s")
            cls = registry.model_class(name)
            if cls.make_bank({}, ArrayStore()) is not None:
                runs = [run_bank(name, Y, chunk) for _ in range(repeats)]
                secs = [r["seconds"] for r in runs]
                rows.append(
                    {
                        "name": name,
                        "form": "bank",
                        "samples_per_s": round(Y.size / statistics.median(secs)),
                        "best_samples_per_s": round(Y.size / min(secs)),
                        "state_bytes_per_series": runs[0]["state_bytes_per_series"],
                        "firings": runs[0]["firings"],
                        "note": f"{series} independent series, model + decision layer, state in numpy columns",
                    }
                )
            else:
                X = workload(series_per_host, min(ticks * 2, stream_rows), seed=1)
                run = run_stream(name, X, chunk * 10)
                rows.append(
                    {
                        "name": name,
                        "form": "stream",
                        "samples_per_s": round(X.size / run["seconds"]),
                        "state_bytes_per_series": round(run["state_bytes"] / X.shape[1]),
                        "state_bytes": run["state_bytes"],
                        "firings": run["firings"],
                        "note": f"per-host multivariate: one instance over one host's {X.shape[1]} series, "
                        f"{X.shape[0]} rows, process_many + scalar decision layer; not comparable with bank rows",
                    }
                )
        progress.advance(1, f"{rows[-1]['name']}: {rows[-1]['samples_per_s']:,} samples/s")
        progress.phase(f"{len(LIVE_STAGES)} live stages", len(LIVE_STAGES))
        for stage, what in LIVE_STAGES.items():
            live = [run_live_stage(stage, Y, chunk, series_per_host) for _ in range(repeats)]
            secs = [r["seconds"] for r in live]
            rows.append(
                {
                    "name": f"{stage} (live stage)",
                    "form": "service",
                    "samples_per_s": round(live[0]["samples"] / statistics.median(secs)),
                    "best_samples_per_s": round(live[0]["samples"] / min(secs)),
                    "state_bytes_per_series": live[0]["state_bytes_per_series"],
                    "detections": live[0]["detections"],
                    "note": f"Engine.observe_telemetry with only {stage}: {what}; slot lookup, round ordering and "
                    f"per-GPU alerts included; one message per host of {series_per_host} series (8 GPUs x 10 "
                    "metrics), decode excluded; state counts the stage's slot columns (for every series, compared "
                    "or not), not the slot table's own key bookkeeping",
                }
            )
            progress.advance(1, f"{stage}: {rows[-1]['samples_per_s']:,} samples/s")
    return {
        "workload": {
            "series": series,
            "ticks": ticks,
            "samples": int(Y.size),
            "ticks_per_message": chunk,
            "repeats": repeats,
            "generator": "seeded: per-series level and noise, AR(1), 0.5% NaN, 0.1% spikes, 1% lasting steps",
        },
        "threads": 1,
        "targets": {"samples_per_s": 1_000_000, "state_bytes_per_series": 2048},
        "detectors": rows,
    }
