"""``vigil bench reporter``: what the training SDK adds to a training step, printed as figures.

1. ``report()`` in a tight loop, each call timed on its own (``perf_counter_ns`` around the call; the
   timer's own cost is printed beside and not subtracted), while the background publisher sends to
   (a) the in-memory bus and (b) the embedded Kafka broker on loopback. The queue is sized to the
   whole run so no call takes the drop path; the publisher's sustained rate is the time from the
   first call until the broker confirmed the last step. Done with a float loss and, where torch is
   installed, a CPU tensor loss.
2. The training thread's wait for the GIL while the publisher drains a backlog (after an outage),
   with the publisher handing the GIL over every 16 steps (the default) and never (for comparison).
3. A real PyTorch loop (the SDK's demo MLP, one thread): step time without and with
   ``reporter.step()`` publishing to the embedded broker, in alternating blocks so drift on a shared
   machine hits both arms alike, plus the time spent inside ``reporter.step()`` itself.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer

from vigil.broker import EmbeddedBroker
from vigil.bus import Bus
from vigil.bus.memory import MemoryBus
from vigil.cli.bench import bench_app, machine
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require
from vigil.cli.progress import progress
from vigil.collectors.training import Reporter, ReporterOptions
from vigil.collectors.training.connection import BOOTSTRAP_VAR
from vigil.collectors.training.reporter import bus_from_env
from vigil.topics import Topics

TARGET_US = 50.0


def _us(ns: np.ndarray) -> dict[str, float]:
    return {
        "mean_us": round(float(ns.mean()) / 1e3, 3),
        "p50_us": round(float(np.percentile(ns, 50)) / 1e3, 3),
        "p99_us": round(float(np.percentile(ns, 99)) / 1e3, 3),
        "max_us": round(float(ns.max()) / 1e3, 1),
    }


def timer_overhead_ns(n: int = 100_000) -> float:
    clock, out = time.perf_counter_ns, np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = clock()
        out[i] = clock() - t0
    return float(np.median(out))


def report_calls(bus: Bus, calls: int, loss: Any, label: str) -> dict[str, Any]:
    """``calls`` report() calls timed one by one, then the wait until the broker confirmed them all."""
    options = ReporterOptions(capacity=calls, flush_timeout_s=60.0)
    reporter = Reporter(bus, job_id="bench", topics=Topics(prefix=f"bench{time.monotonic_ns()}"), options=options)
    warm = time.perf_counter()
    reporter.report(0, loss)  # steady state: the producer is connected and knows the topic
    reporter.flush(60.0)
    warmup_s = time.perf_counter() - warm
    clock, out, report = time.perf_counter_ns, np.empty(calls, dtype=np.int64), reporter.report
    started = time.perf_counter()
    for i in range(1, calls + 1):
        t0 = clock()
        report(i, loss)
        out[i - 1] = clock() - t0
    loop_s = time.perf_counter() - started
    flushed = reporter.flush(120.0)
    publish_s = time.perf_counter() - started
    reporter.close()
    return {
        "loss": label,
        "calls": calls,
        **_us(out),
        "loop_mean_us": round(loop_s / calls * 1e6, 3),  # wall time of the loop / calls, timers included
        "dropped": reporter.dropped,
        "published": reporter.published - 1,
        "all_published": flushed and reporter.published == calls + 1,
        "publisher_steps_per_s": round((reporter.published - 1) / publish_s),
        "publisher_first_connect_s": round(warmup_s, 3),
    }


class TimedReporter:
    """Times each ``Reporter.step`` call inside the training loop."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.ns: list[int] = []

    def step(self, loss: Any, *, batch_size: int | None, grad_norm: Any, optimizer: Any) -> bool:
        t0 = time.perf_counter_ns()
        queued = self.reporter.step(loss, batch_size=batch_size, grad_norm=grad_norm, optimizer=optimizer)
        self.ns.append(time.perf_counter_ns() - t0)
        return queued


def torch_loop(bus: Bus, steps: int, block: int) -> dict[str, Any]:
    import torch

    from vigil.collectors.training.demo import make_job, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier figures on a shared machine; restored below
    try:
        job = make_job()
        train(job, block, None)  # warm-up: allocator, autograd, first-call paths
        reporter = Reporter(bus, job_id="bench-loop", topics=Topics(prefix=f"loop{time.monotonic_ns()}"))
        timed = TimedReporter(reporter)
        without: list[float] = []
        with_reporting: list[float] = []
        for _ in range(max(1, steps // block)):
            without += train(job, block, None)
            with_reporting += train(job, block, timed)
        reporter.close()
    finally:
        torch.set_num_threads(threads)
    base, rep = np.array(without) * 1e3, np.array(with_reporting) * 1e3
    added_us = (float(np.median(rep)) - float(np.median(base))) * 1e3
    return {
        "workload": (
            f"MLP 32-256-256-1, batch 64, AdamW + grad-norm clipping, torch {torch.__version__} CPU, 1 thread; "
            f"{len(base)} steps per arm in alternating blocks of {block}"
        ),
        "step_ms_p50_without": round(float(np.median(base)), 4),
        "step_ms_p50_with": round(float(np.median(rep)), 4),
        "step_ms_mean_without": round(float(base.mean()), 4),
        "step_ms_mean_with": round(float(rep.mean()), 4),
        "step_ms_p99_without": round(float(np.percentile(base, 99)), 4),
        "step_ms_p99_with": round(float(np.percentile(rep, 99)), 4),
        "added_us_p50": round(added_us, 2),
        "added_pct_p50": round(100 * added_us / 1e3 / float(np.median(base)), 3),
        "reporter_step_call": _us(np.array(timed.ns, dtype=np.int64)),
        "published": reporter.published,
        "dropped": reporter.dropped,
    }


def backlog_stall(bus: Bus, backlog: int, yield_every: int, seconds: float = 1.5) -> dict[str, Any]:
    """How long the training thread waits for the GIL while the publisher drains a backlog.

    The training thread releases the GIL for 0.5 ms (as a torch op or a CUDA launch does) in a loop;
    the figure is how much later than 0.5 ms it gets going again: timer slack plus the wait for the GIL.
    """
    options = ReporterOptions(capacity=backlog + 1, interval_s=0.05, yield_every=yield_every)
    reporter = Reporter(bus, job_id="bench-stall", topics=Topics(prefix=f"stall{time.monotonic_ns()}"), options=options)
    reporter.report(0, 0.5)
    reporter.flush(60.0)
    for i in range(1, backlog + 1):
        reporter.report(i, 0.5)
    overshoot: list[float] = []
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        time.sleep(0.0005)
        overshoot.append(time.perf_counter() - t0 - 0.0005)
    reporter.flush(120.0)
    reporter.close()
    ns = np.array(overshoot) * 1e9
    return {"yield_every": yield_every, "iterations": len(ns), **_us(ns)}


def _with_broker(work: Path, fn: Callable[[Bus], dict[str, Any]]) -> dict[str, Any]:
    with EmbeddedBroker(work, ephemeral=True) as broker:
        return fn(bus_from_env({BOOTSTRAP_VAR: broker.bootstrap}))  # the reporter's own Kafka settings


@bench_app.command("reporter")
def reporter_bench(
    json_out: bool = JsonOption,
    calls: int = typer.Option(200_000, help="report() calls per measurement"),
    torch_steps: int = typer.Option(1000, help="training steps per arm of the PyTorch loop (0: skip it)"),
    block: int = typer.Option(100, help="steps per alternating block in the PyTorch loop"),
) -> None:
    """µs per report() call (publisher on the memory bus, on the real broker); PyTorch step time with/without."""
    require("bench reporter", "embedded")
    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
    losses: list[tuple[str, Any]] = [("float", 0.5)]
    if torch is not None:
        losses.append(("cpu tensor (requires_grad)", torch.tensor(0.5, requires_grad=True) * 1.0))
    result: dict[str, Any] = {
        "machine": machine(),
        "workload": f"{calls} report() calls per row in a tight loop, queue sized to hold them all (no drops)",
        "timer_overhead_ns": timer_overhead_ns(),
        "target_us_per_step": TARGET_US,
    }
    with tempfile.TemporaryDirectory(prefix="vigil-bench-reporter-") as tmp, progress(json_out) as shown:
        shown.phase("report() calls, publisher on the memory bus")
        result["memory_bus"] = [report_calls(MemoryBus(), calls, loss, label) for label, loss in losses]
        shown.phase("report() calls, publisher on the embedded broker")
        result["kafka_embedded"] = _with_broker(
            Path(tmp) / "calls",
            lambda bus: {"rows": [report_calls(bus, calls, loss, label) for label, loss in losses]},
        )["rows"]
        shown.phase("the training thread while the publisher drains a backlog")
        result["gil_wait_during_backlog_kafka_embedded"] = {
            "workload": "training thread releases the GIL for 0.5 ms in a loop for 1.5 s while the publisher "
            "drains 20000 queued steps; figures: overshoot past 0.5 ms",
            "rows": _with_broker(
                Path(tmp) / "stall", lambda bus: {"rows": [backlog_stall(bus, 20_000, e) for e in (16, 0)]}
            )["rows"],
        }
        if torch is not None and torch_steps > 0:
            shown.phase(f"a PyTorch loop, {torch_steps} steps with and without reporting")
            result["torch_loop_kafka_embedded"] = _with_broker(
                Path(tmp) / "loop", lambda bus: torch_loop(bus, torch_steps, block)
            )
    rows = result["memory_bus"] + result["kafka_embedded"]
    result["meets_target_mean"] = all(r["mean_us"] < TARGET_US for r in rows)
    show(result, json_out)
