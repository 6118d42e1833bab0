"""``vigil bench pipeline``: throughput and time-to-page on the real broker, printed as figures.

Phase 1 (throughput, ``bench_drain.py``): the simulator writes ``--seconds`` of flat-out output (many
ticks per message, as a real agent batches; the job's steps in batches with ``--training``), then
``--analytics N`` analytics processes in one consumer group drain it with the default stages, one of
them killed mid-drain when N >= 2; the figure is telemetry samples per wall second of the drain,
read from each process's own counters, and the pager's count of faults paged once, lost or twice.
Phase 2 (latency): the whole stack in real time with a schedule of repeated faults; per fault
kind, seconds from the ground-truth start to the page arriving at our webhook receiver.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require
from vigil.cli.progress import progress
from vigil.cli.settings import VigilConfig
from vigil.progress import Progress

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: programs that print figures")

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
    seconds: float = typer.Option(60.0, help="seconds the simulator writes flat out before the drain"),
    latency_seconds: float = typer.Option(185.0, help="latency phase length (the fault schedule needs 180 s)"),
    ticks_per_batch: int = typer.Option(10, help="ticks per telemetry message in the throughput phase"),
    training: bool = typer.Option(
        False, "--training/--no-training", help="also publish the job's training steps in the throughput phase"
    ),
    analytics: int = typer.Option(
        1, "--analytics", min=1, max=8, help="analytics processes draining the backlog (>= 2: one is killed mid-run)"
    ),
) -> None:
    """Samples/s through broker and N analytics processes (one killed when N >= 2), and fault-to-page latency."""
    require("bench pipeline", "server", "embedded")
    from vigil.cli import bench_drain

    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp, progress(json_out) as shown:
        work = Path(tmp)
        result: dict[str, Any] = {"machine": machine()}
        phase = work / "throughput"
        result["throughput"] = bench_drain.throughput(phase, seconds, ticks_per_batch, training, analytics, shown)
        result["samples_per_s"] = result["throughput"]["samples_per_s"]
        if latency_seconds > 0:
            lat = latency(latency_seconds, work / "latency", shown)
            result.update(lat)
    show(result, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
