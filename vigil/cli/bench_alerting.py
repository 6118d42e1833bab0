"""``vigil bench alerting``: the incident engine's throughput and a switch-failure storm, as figures.

Both parts run the real alerting service in this one process (``AlertingService`` over the in-memory
bus, so the broker's own cost is left out) on a SQLite store in a temporary folder (WAL,
``synchronous=FULL``, as in production):

- **throughput**: ``--alerts`` distinct detections (every GPU of ``--nodes`` nodes, several alert
  names each) are queued, then the service consumes them: decode, the commit protocol, and the whole
  pipeline (dedup, inhibit, correlate, mute, route, group, notify into the outbox, record), one
  store transaction per poll of ``max_poll_records``. The figure is alerts per wall second from the
  first poll to the last commit.
- **storm**: one switch fails and its ``--storm-nodes`` nodes (in the topology under that switch)
  send ``--storm`` alerts stamped in the same second. The service runs as it does in production
  (consumer loop, outbox workers, a pager notifier that records what reaches it); the figures are
  the incidents opened, the notifications the pager received until 5 s after the last alert was
  committed, and the seconds from queueing the first alert to the first page reaching the pager.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import typer
import yaml
from prometheus_client import CollectorRegistry

from vigil.cli.bench import bench_app, machine
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require
from vigil.clock import SystemClock
from vigil.codec import encode
from vigil.config import validate
from vigil.events import Detection, Severity

NAMES = ("GpuOverTemperature", "GpuTelemetryAnomaly", "GpuUnlikeSiblings", "GpuEccSbeRateHigh")
STORM_NAMES = ("InfinibandPortDown", "NcclCommTimeout", "HostTelemetryAnomaly", "GpuTelemetryAnomaly")
TARGET_ALERTS_PER_S = 5_000


class Pager:
    """A notifier that accepts everything and notes when each notification reached it."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def send(self, notification: Any) -> Any:
        from vigil.alerting.notifiers import DeliveryResult

        with self._lock:
            self.received.append((time.monotonic(), notification.reason))
        return DeliveryResult.delivered()

    def close(self) -> None:
        return None


def detection(name: str, labels: dict[str, str], ts: float, severity: Severity = "critical") -> Detection:
    series = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return Detection(
        ts,
        "bench",
        series,
        {"alertname": name, **labels},
        5.0,
        "firing",
        severity,
        {},
        ts,
        ts,
        f"{name} on {labels.get('host')}",
    )


def _service(work: Path, config: dict[str, Any], pager: Pager | None) -> Any:
    from vigil.alerting.config import AlertingConfig
    from vigil.alerting.service import AlertingService
    from vigil.bus.memory import MemoryBus
    from vigil.topics import Topics

    cfg = validate(
        AlertingConfig,
        {"notifiers": [{"type": "log", "name": "pager"}], "api": {"enabled": False}, **config},
        "alerting",
    )
    bus = MemoryBus()
    notifiers = {"pager": pager} if pager is not None else None
    svc = AlertingService(bus, Topics(), cfg, SystemClock(), CollectorRegistry(), work / "alerts.db", notifiers)
    return svc, bus


def throughput(alerts: int, nodes: int, work: Path) -> dict[str, Any]:
    svc, bus = _service(work, {}, Pager())
    producer, topic, now = bus.producer(), svc._topics.detections, time.time()
    for i in range(alerts):
        gpu, name = i % (nodes * 8), NAMES[(i // (nodes * 8)) % len(NAMES)]
        labels = {"cluster": "dc1", "host": f"node-{gpu // 8:04d}", "gpu_index": str(gpu % 8), "round": str(i)}
        producer.send(topic, encode(detection(name, labels, now)), key=labels["host"].encode())
    start = time.perf_counter()
    consumed = 0
    while consumed < alerts:
        consumed += svc.step(0)
    seconds = time.perf_counter() - start
    incidents = len(svc._store.incidents(limit=10**6))
    svc.close()
    return {
        "alerts": alerts,
        "seconds": round(seconds, 3),
        "alerts_per_s": round(alerts / seconds),
        "incidents": incidents,
    }


def storm(alerts: int, nodes: int, work: Path) -> dict[str, Any]:
    hosts = [f"node-{i:03d}" for i in range(nodes)]
    topology = work / "topology.yaml"
    topology.write_text(yaml.safe_dump({"switches": {"sw-07": hosts}, "gpus_per_node": 8}))
    pager = Pager()
    config = {"topology": {"file": str(topology)}, "dispatch_interval": "0.05s"}
    svc, bus = _service(work, config, pager)
    producer, topic, now = bus.producer(), svc._topics.detections, time.time()
    queued_at = time.monotonic()
    distinct: set[tuple[str, str]] = set()  # (alertname, host): "port" is not an identity label
    for i in range(alerts):  # every node's alerts in the same second, in the order the nodes report
        host = hosts[i % nodes]
        name = STORM_NAMES[(i // nodes) % len(STORM_NAMES)]
        labels = {"cluster": "dc1", "host": host, "port": str(i // nodes)}
        distinct.add((name, host))
        producer.send(topic, encode(detection(name, labels, now)), key=host.encode())
    stop = threading.Event()
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    from vigil.alerting.store import AlertStore

    watch = AlertStore(svc.database)  # this thread's own connection
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and watch.count("firing") < len(distinct):
        time.sleep(0.05)
    time.sleep(5.0)  # the followers' notifications, if any were due, have had time to leave
    stop.set()
    runner.join(30)
    incidents = watch.incidents(limit=10**6)
    watch.close()
    first = min((t for t, _ in pager.received), default=None)
    return {
        "alerts": alerts,
        "distinct_alerts": len(distinct),
        "nodes": nodes,
        "incidents": len(incidents),
        "incident_domains": sorted({i.domain.key for i in incidents if i.state != "merged"}),
        "notifications": len(pager.received),
        "first_page_s": round(first - queued_at, 3) if first is not None else None,
    }


@bench_app.command("alerting")
def alerting_bench(
    json_out: bool = JsonOption,
    alerts: int = typer.Option(20_000, min=1, help="alerts for the throughput part"),
    nodes: int = typer.Option(512, min=1, help="nodes (x 8 GPUs) the throughput alerts are spread over"),
    storm_alerts: int = typer.Option(10_000, "--storm", min=1, help="alerts in the switch-failure storm"),
    storm_nodes: int = typer.Option(150, min=1, help="nodes under the failed switch"),
) -> None:
    """Alerts per second through intake -> store -> route -> outbox, and a switch failure's storm."""
    require("bench alerting", "server")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-alerting-") as tmp:
        (Path(tmp) / "t").mkdir()
        (Path(tmp) / "s").mkdir()
        through = throughput(alerts, nodes, Path(tmp) / "t")
        storm_result = storm(storm_alerts, storm_nodes, Path(tmp) / "s")
    result = {
        "alerts_per_s": through["alerts_per_s"],
        "storm": storm_result,
        "throughput": through,
        "target_alerts_per_s": TARGET_ALERTS_PER_S,
        "meets_target": through["alerts_per_s"] >= TARGET_ALERTS_PER_S,
        "machine": machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # other work on the machine meanwhile
    }
    show(result, json_out)
