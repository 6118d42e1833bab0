"""``vigil bench sink``: samples/s the Influx sink writes into a real VictoriaMetrics, and how long a sample
takes from its event time to being queryable.

Phase 1 (throughput), shaped like ``vigil bench pipeline``'s so the two figures compare: the embedded
broker, the simulator publishing flat out for ``--seconds`` (10 ticks per message, telemetry only), and
one ``vigil sink influx`` process writing to a VictoriaMetrics started here. The figure is telemetry
samples the store confirmed per wall second while the producer ran, read from the sink's own
``vigil_sink_points_written_total``; VictoriaMetrics' ``vm_rows_inserted_total`` is reported beside it,
and ``end_to_end_samples_per_s`` is everything written over the time until the sink had written all
(``drained``) or the wait for it (3 minutes after the producer) gave up.
Phase 2 (lag): the same, with the simulator in real time (the 8 x 8 fleet, one tick a second); this
process reads VictoriaMetrics' raw export of one series per host every 0.1 s, and each sample's lag
is the wall time it was first seen minus its event time. The first ``LAG_WARMUP_S`` are left out
(VictoriaMetrics makes a new series searchable after a few seconds; that time is reported apart).
The command is ``vigil.cli.bench_sink``; this module is what it runs (httpx comes with an extra).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from vigil.broker import EmbeddedBroker, free_port
from vigil.cli.bench import machine
from vigil.cli.processes import ProcessGroup
from vigil.cli.settings import VigilConfig, dump_config
from vigil.cli.victoria import VictoriaMetrics

LAG_WARMUP_S = 10.0
LAG_SERIES = 'gpu_temperature_celsius{gpu_index="0"}'


def metric(port: int, name: str, labels: str = "") -> float:
    """One sample of a process's /metrics (0 while it does not answer)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def written(port: int) -> float:
    return metric(port, "vigil_sink_points_written_total", '{stream="telemetry"}')


class Run:
    """Broker, VictoriaMetrics' URL, and the sink process, for one phase."""

    def __init__(self, work: Path, vm: VictoriaMetrics, sim: dict[str, Any]) -> None:
        self.work = work
        self.broker = EmbeddedBroker(work, ephemeral=True).start()
        self.config = VigilConfig.model_validate(
            {
                "data_dir": str(work),
                "log_level": "warning",
                "kafka": {"bootstrap_servers": [self.broker.bootstrap]},
                "sim": {"schedule": "none", "training": False, **sim},
                "sink": {"influx": {"url": vm.url, "streams": ["telemetry"]}},
            }
        )
        self.path = work / "bench.yaml"
        dump_config(self.config, self.path)
        self.procs = ProcessGroup(work / "logs")
        self.port = free_port()
        self.procs.spawn("sink", ["sink", "influx", "--config", str(self.path), "--metrics-port", str(self.port)])
        self._wait_assigned()

    def _wait_assigned(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json().get("assigned"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the sink did not join its group within {timeout_s:.0f}s (log: {self.work / 'logs'})")

    def close(self) -> None:
        self.procs.stop_all(["sim", "producer", "sink"])
        self.broker.stop()


def throughput(vm: VictoriaMetrics, seconds: float, work: Path, ticks_per_batch: int) -> dict[str, Any]:
    run = Run(work, vm, {"ticks_per_batch": ticks_per_batch})
    rows_before = vm_rows(vm)
    try:
        started = time.monotonic()
        run.procs.spawn("producer", ["sim", "--config", str(run.path), "--fast", str(seconds)])
        trace: list[tuple[float, float]] = []
        while run.procs.alive("producer") and time.monotonic() - started < seconds + 60:
            trace.append((time.monotonic() - started, written(run.port)))
            time.sleep(1.0)
        produced = json.loads((work / "logs" / "producer.log").read_text().strip().splitlines()[-1])
        ended = time.monotonic() - started
        skipped, drained = 0.0, False
        while not drained and time.monotonic() - started < ended + 180:
            time.sleep(0.5)
            done = written(run.port)
            skipped = metric(run.port, "vigil_sink_samples_skipped_total", '{reason="not_finite"}')
            trace.append((time.monotonic() - started, done))
            drained = done + skipped >= produced["samples"]
    finally:
        run.close()
    in_run = [(t, s) for t, s in trace if 1.0 <= t <= ended]
    sustained = (in_run[-1][1] - in_run[0][1]) / (in_run[-1][0] - in_run[0][0]) if len(in_run) > 1 else 0.0
    last_at, total = trace[-1]  # when drained, or when the wait for it gave up
    return {
        "workload": f"{run.config.sim.nodes} hosts x {run.config.sim.gpus_per_node} GPUs, "
        f"{ticks_per_batch} ticks per TelemetryBatch, telemetry only, one sink process",
        "samples_produced": produced["samples"],
        "samples_written": total,
        "samples_skipped_not_finite": skipped,
        "vm_rows_inserted": vm_rows(vm) - rows_before,
        "producer_seconds": round(ended, 1),
        "drained": drained,
        "drained_after_s": round(last_at, 1) if drained else None,
        "samples_per_s": round(sustained),
        "end_to_end_samples_per_s": round(total / last_at) if last_at else 0,
        "producer_samples_per_s": round(produced["samples"] / produced["seconds"]),
    }


def vm_rows(vm: VictoriaMetrics) -> float:
    text = httpx.get(f"{vm.url}/metrics", timeout=10).text
    found = re.search(r'^vm_rows_inserted_total\{type="influx"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def lag(vm: VictoriaMetrics, seconds: float, work: Path) -> dict[str, Any]:
    run = Run(work, vm, {"ticks_per_batch": 1, "interval": 1.0})
    seen: dict[str, float] = {}  # host -> its newest sample's timestamp (ms) seen in the store
    lags: list[float] = []
    first_seen_after = None
    try:
        started = time.time()
        run.procs.spawn("sim", ["sim", "--config", str(run.path)])
        while time.time() - started < seconds:
            fresh = new_samples(vm, started, seen)
            now = time.time()
            if fresh and first_seen_after is None:
                first_seen_after = now - started
            lags += [now - ts for ts in fresh if ts >= started + LAG_WARMUP_S]
            time.sleep(0.1)
        count = max(1.0, metric(run.port, "vigil_sink_lag_seconds_count"))
        confirm = metric(run.port, "vigil_sink_lag_seconds_sum") / count
    finally:
        run.close()
    return {
        "workload": f"{run.config.sim.nodes} hosts x {run.config.sim.gpus_per_node} GPUs in real time (1 tick/s), "
        f"{run.config.sink.influx.flush_interval:g}s flush interval; series {LAG_SERIES} of each host",
        "samples": len(lags),
        "lag_p50_s": round(float(np.percentile(lags, 50)), 3) if lags else None,
        "lag_p99_s": round(float(np.percentile(lags, 99)), 3) if lags else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
        "first_sample_queryable_after_s": round(first_seen_after, 1) if first_seen_after else None,
        "sink_confirm_lag_mean_s": round(confirm, 3),
    }


def new_samples(vm: VictoriaMetrics, since: float, seen: dict[str, float]) -> list[float]:
    """Event times (s) of the samples of ``LAG_SERIES`` queryable now that were not before."""
    params = {"match[]": LAG_SERIES, "start": f"{since:.3f}"}
    response = httpx.get(f"{vm.url}/api/v1/export", params=params, timeout=10)
    out: list[float] = []
    for row in (json.loads(line) for line in response.text.splitlines() if line.strip()):
        host = row["metric"].get("host", "?")
        fresh = [ts for ts in row["timestamps"] if ts > seen.get(host, 0.0)]
        if fresh:
            seen[host] = max(fresh)
            out += [ts / 1000.0 for ts in fresh]
    return out


def vm_version(vm: VictoriaMetrics) -> str:
    """From its own /metrics (the Debian build's ``-version`` prints nothing)."""
    text = httpx.get(f"{vm.url}/metrics", timeout=10).text
    found = re.search(r'^vm_app_version\{[^}]*version="([^"]*)"', text, re.M)
    return found.group(1) if found and found.group(1) else "(version not reported)"


def run(seconds: float, lag_seconds: float, ticks_per_batch: int) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(), "load_average_1m": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-sink-") as tmp, VictoriaMetrics(Path(tmp) / "vm") as vm:
        result["store"] = f"VictoriaMetrics {vm_version(vm)} on loopback, InfluxDB v2 write API"
        result["throughput"] = throughput(vm, seconds, Path(tmp) / "throughput", ticks_per_batch)
        result["samples_per_s"] = result["throughput"]["samples_per_s"]
        if lag_seconds > 0:
            result["lag"] = lag(vm, lag_seconds, Path(tmp) / "lag")
            result["lag_p50_s"], result["lag_p99_s"] = result["lag"]["lag_p50_s"], result["lag"]["lag_p99_s"]
    return result
