"""``vigil bench agent``: what the node agent costs, as CPU % of one core and peak RSS, on the real broker.

The agent runs as its own process (``vigil agent``, exactly as on a node) against the embedded
broker for ``--seconds``. CPU is the process's user + system time over wall time, measured from
when its ``/healthz`` first answers (start-up is reported separately, it is paid once); peak RSS is
the kernel's high-water mark (``VmHWM``). The records are then read back from the broker, so the
published figures are checked against what actually arrived.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from vigil.broker import EmbeddedBroker, free_port
from vigil.bus.kafka import KafkaBus
from vigil.cli.bench import bench_app, machine
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require
from vigil.cli.progress import progress
from vigil.codec import decode
from vigil.config import KafkaConfig
from vigil.events import TelemetryBatch
from vigil.progress import Progress, Silent
from vigil.topics import Topics

if TYPE_CHECKING:  # httpx and psutil are the agent extra's: imported when the benchmark runs
    import psutil

TARGET_CPU_PERCENT = 2.0
TARGET_RSS_MB = 100.0
_METRIC = re.compile(r"^(vigil_[a-z_]+)(\{[^}]*\})? (\S+)$", re.M)


def _metrics(port: int) -> dict[str, float]:
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    return {name + (labels or ""): float(value) for name, labels, value in _METRIC.findall(text)}


def _wait_healthy(port: int, timeout_s: float) -> float:
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the agent's /healthz did not answer 200 within {timeout_s:.0f}s")


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        match = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
        if match:
            return int(match.group(1)) / 1024
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _read_back(bus: KafkaBus, topic: str, want: int) -> tuple[int, int]:
    """Batches and samples on the telemetry topic."""
    consumer = bus.consumer([topic], "bench-agent-readback")
    batches = samples = 0
    deadline = time.monotonic() + 30
    try:
        while batches < want and time.monotonic() < deadline:
            for record in consumer.poll(0.5):
                event = decode(record.value)
                if isinstance(event, TelemetryBatch):
                    batches += 1
                    samples += event.sample_count
    finally:
        consumer.close()
    return batches, samples


def run_agent(
    work: Path,
    collectors: str,
    interval: float,
    seconds: float,
    options: dict[str, dict[str, Any]],
    shown: Progress | None = None,
) -> dict[str, Any]:
    shown = shown or Silent()
    import psutil

    from vigil.cli.processes import ProcessGroup

    with EmbeddedBroker(work, ephemeral=True) as broker:
        kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap])
        topics = Topics()
        bus = KafkaBus(kafka)
        bus.create_topics({topics.telemetry: 8, topics.logs: 4})
        port = free_port()
        names = [c.strip() for c in collectors.split(",") if c.strip()]
        entries: dict[str, dict[str, Any]] = {}
        for item in names:
            name, _, module = item.partition("=")
            entries[name] = {"interval": interval, **options.get(name, {}), **({"module": module} if module else {})}
        config = {
            "data_dir": str(work),
            "log_level": "warning",
            "kafka": {"bootstrap_servers": [broker.bootstrap]},
            "agent": {"host": "bench-node", "collectors": entries, "metrics_port": port},
        }
        path = work / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        procs = ProcessGroup(work / "logs")
        child = procs.spawn("agent", ["agent", "--config", str(path)])
        proc = psutil.Process(child.proc.pid)
        try:
            ready_s = _wait_healthy(port, 60)
            cpu0, wall0 = _cpu_s(proc), time.monotonic()
            shown.phase(f"the agent runs ({collectors})", seconds)
            while (left := wall0 + seconds - time.monotonic()) > 0:
                time.sleep(min(1.0, left))
                spent = time.monotonic() - wall0
                shown.advance(min(1.0, left), f"CPU {100 * (_cpu_s(proc) - cpu0) / spent:.2f}% of one core")
            cpu1, wall1 = _cpu_s(proc), time.monotonic()
            peak = _peak_rss_mb(proc.pid)
            rss_end = proc.memory_info().rss / 2**20
            figures = _metrics(port)
        finally:
            code = procs.stop("agent")
        published = int(figures.get('vigil_agent_published_records_total{stream="telemetry"}', 0))
        on_broker, samples_on_broker = _read_back(bus, topics.telemetry, published)
    log_tail = (work / "logs" / "agent.log").read_text()[-2000:]
    errors = {k: v for k, v in figures.items() if k.startswith("vigil_collector_errors_total")}
    return {
        "workload": (
            f"collectors {', '.join(names)} every {interval:g}s for {seconds:g}s"
            + (f" (options {json.dumps(options)})" if options else "")
            + "; embedded Tansu broker, memory storage"
        ),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 3),
        "startup_cpu_s": round(cpu0, 2),
        "startup_wall_s": round(ready_s, 2),
        "peak_rss_mb": round(peak, 1),
        "rss_at_end_mb": round(rss_end, 1),
        "batches_published": published,
        "samples_published": int(figures.get("vigil_agent_published_samples_total", 0)),
        "batches_read_back": on_broker,
        "samples_read_back": samples_on_broker,
        "collector_errors": errors,
        "exit_code": code,
        "log_tail": log_tail if code else "",
    }


@bench_app.command("agent")
def agent_bench(
    json_out: bool = JsonOption,
    seconds: float = typer.Option(60.0, help="how long the agent runs once started"),
    collectors: str = typer.Option("sim_gpu,host", help="collectors to run (name, or name=module for your own)"),
    interval: float = typer.Option(1.0, help="every collector's interval, seconds"),
    options: str = typer.Option("{}", help='collector options as JSON, e.g. \'{"sim_gpu": {"gpus": 8}}\''),
) -> None:
    """The node agent's CPU (% of one core) and peak RSS while it publishes to the embedded broker."""
    require("bench agent", "agent", "embedded")
    try:
        per_collector = json.loads(options)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--options") from exc
    if not isinstance(per_collector, dict) or not all(isinstance(v, dict) for v in per_collector.values()):
        raise typer.BadParameter("a JSON object of collector name -> options object", param_hint="--options")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-agent-") as tmp, progress(json_out) as shown:
        result: dict[str, Any] = {"machine": machine()}
        result.update(run_agent(Path(tmp), collectors, interval, seconds, per_collector, shown))
    result["targets"] = {"cpu_percent_of_one_core": TARGET_CPU_PERCENT, "peak_rss_mb": TARGET_RSS_MB}
    result["meets_targets"] = (
        result["cpu_percent_of_one_core"] < TARGET_CPU_PERCENT and result["peak_rss_mb"] < TARGET_RSS_MB
    )
    show(result, json_out)
