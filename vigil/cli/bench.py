"""``vigil bench pipeline``: throughput and time-to-page on the real broker, printed as figures.

Phase 1 (throughput): the simulator publishes as fast as it can for ``--seconds`` (many ticks per
message, as a real agent batches), one analytics process consumes and scores with the default
detectors; the figure is samples scored per wall second while the producer runs, read from the
analytics process's own ``vigil_analytics_samples_total`` counter.
Phase 2 (latency): the whole stack in real time with a schedule of repeated faults; per fault
kind, seconds from the ground-truth start to the page arriving at our webhook receiver.
"""

from __future__ import annotations

import json
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from vigil.broker import EmbeddedBroker, free_port
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require
from vigil.cli.progress import progress
from vigil.cli.settings import VigilConfig, dump_config
from vigil.progress import Progress

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: programs that print figures")
SAMPLES = re.compile(r"^vigil_analytics_samples_total (\S+)$", re.M)

# Repeated thermal and XID 79 faults on distinct GPUs (p50/p99 need several of each), after the
# detectors' warm-up, then one of each other kind.
LATENCY_SCHEDULE: list[dict[str, Any]] = [
    *(
        {"kind": "thermal", "at": 45 + 20 * i, "duration": 35, "host": f"node-0{2 * i}", "gpu_index": i + 1}
        for i in range(4)
    ),
    *(
        {"kind": "xid79", "at": 52 + 20 * i, "duration": 8, "host": f"node-0{2 * i + 1}", "gpu_index": i + 2}
        for i in range(4)
    ),
    {"kind": "xid48", "at": 130, "duration": 20, "host": "node-01", "gpu_index": 7},
    {"kind": "ecc_trend", "at": 135, "duration": 30, "host": "node-02", "gpu_index": 6},
    {"kind": "straggler", "at": 140, "duration": 30, "rank": 9},
    {"kind": "loss_nan", "at": 160, "duration": 10},
]


def machine() -> str:
    cpu = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import os

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
    )


def _analytics_samples(port: int) -> float:
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    match = SAMPLES.search(text)
    return float(match.group(1)) if match else 0.0


def throughput(seconds: float, work: Path, ticks_per_batch: int, training: bool, shown: Progress) -> dict[str, Any]:
    from vigil.cli.processes import ProcessGroup

    with EmbeddedBroker(work, ephemeral=True) as broker:
        cfg = VigilConfig.model_validate(
            {
                "data_dir": str(work),
                "log_level": "warning",
                "kafka": {"bootstrap_servers": [broker.bootstrap]},
                "sim": {"schedule": "none", "ticks_per_batch": ticks_per_batch, "training": training},
            }
        )
        path = work / "bench.yaml"
        dump_config(cfg, path)
        procs = ProcessGroup(work / "logs")
        port = free_port()
        procs.spawn("analytics", ["analytics", "--config", str(path), "--metrics-port", str(port)])
        time.sleep(2)
        started = time.monotonic()
        procs.spawn("producer", ["sim", "--config", str(path), "--fast", str(seconds)])
        trace: list[tuple[float, float]] = []
        shown.phase("throughput: the simulator publishes flat out", seconds)
        while procs.alive("producer") and time.monotonic() - started < seconds + 60:
            trace.append((time.monotonic() - started, _analytics_samples(port)))
            shown.advance(1.0, f"{trace[-1][1]:,.0f} samples scored")
            time.sleep(1.0)
        produced = json.loads((work / "logs" / "producer.log").read_text().strip().splitlines()[-1])
        ended = time.monotonic() - started
        drained_at = ended
        shown.phase("throughput: analytics drains the backlog", produced["samples"])
        while time.monotonic() - started < ended + 120:
            done = _analytics_samples(port)
            trace.append((time.monotonic() - started, done))
            shown.advance(done - trace[-2][1], f"{done:,.0f} of {produced['samples']:,} samples scored")
            if done >= produced["samples"]:
                drained_at = time.monotonic() - started
                break
            time.sleep(0.5)
        procs.stop_all(["analytics"])
    consumed = trace[-1][1]
    # Sustained rate: what analytics scored while the producer ran (warm-up second excluded).
    in_run = [(t, s) for t, s in trace if 1.0 <= t <= ended]
    sustained = (in_run[-1][1] - in_run[0][1]) / (in_run[-1][0] - in_run[0][0]) if len(in_run) > 1 else 0.0
    sim = cfg.sim
    return {
        "workload": (
            f"{sim.nodes} hosts x {sim.gpus_per_node} GPUs, {ticks_per_batch} ticks per TelemetryBatch, "
            + ("with" if training else "without")
            + " the job's TrainingSteps"
        ),
        "samples_produced": produced["samples"],
        "samples_scored": consumed,
        "producer_seconds": round(ended, 1),
        "drained_after_s": round(drained_at, 1),
        "samples_per_s": round(sustained),
        "end_to_end_samples_per_s": round(consumed / drained_at) if drained_at else 0,
        "producer_samples_per_s": round(produced["samples"] / produced["seconds"]),
    }


def latency(seconds: float, work: Path, shown: Progress) -> dict[str, Any]:
    from vigil.cli.stack import Stack

    cfg = VigilConfig.model_validate(
        {"data_dir": str(work), "log_level": "warning", "sim": {"faults": LATENCY_SCHEDULE}}
    )
    stack = Stack(cfg, ephemeral=True).start()
    shown.phase("latency: faults injected, pages awaited", seconds)
    try:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            report = stack.report()
            paged = sum(1 for row in report["faults"] if row["detected"])
            shown.advance(min(1.0, left), f"{paged} of {len(report['faults'])} faults paged")
    finally:
        stack.stop()
    report = stack.report()
    by_kind: dict[str, dict[str, Any]] = {}
    for row in report["faults"]:
        entry = by_kind.setdefault(row["kind"], {"faults": 0, "detected": 0, "latencies": []})
        entry["faults"] += 1
        if row["detected"]:
            entry["detected"] += 1
            entry["latencies"].append(row["latency_s"])
    for entry in by_kind.values():
        lat = entry.pop("latencies")
        entry["latency_p50_s"] = round(float(np.percentile(lat, 50)), 2) if lat else None
        entry["latency_p99_s"] = round(float(np.percentile(lat, 99)), 2) if lat else None
    all_lat = [r["latency_s"] for r in report["faults"] if r["detected"]]
    return {
        "by_kind": by_kind,
        "latency_p50_s": round(float(np.percentile(all_lat, 50)), 2) if all_lat else None,
        "latency_p99_s": round(float(np.percentile(all_lat, 99)), 2) if all_lat else None,
        "false_alerts": report["false_alerts"],
    }


@bench_app.command("pipeline")
def pipeline(
    json_out: bool = JsonOption,
    seconds: float = typer.Option(60.0, help="throughput phase length"),
    latency_seconds: float = typer.Option(185.0, help="latency phase length (the fault schedule needs 180 s)"),
    ticks_per_batch: int = typer.Option(10, help="ticks per telemetry message in the throughput phase"),
    training: bool = typer.Option(
        False, "--training/--no-training", help="also publish the job's TrainingSteps in the throughput phase"
    ),
) -> None:
    """End-to-end samples/s through broker and one analytics process, and fault-to-page latency."""
    require("bench pipeline", "server", "embedded")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp, progress(json_out) as shown:
        work = Path(tmp)
        result: dict[str, Any] = {"machine": machine()}
        result["throughput"] = throughput(seconds, work / "throughput", ticks_per_batch, training, shown)
        result["samples_per_s"] = result["throughput"]["samples_per_s"]
        if latency_seconds > 0:
            lat = latency(latency_seconds, work / "latency", shown)
            result.update(lat)
    show(result, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
