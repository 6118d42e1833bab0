"""Everything on one machine: embedded broker, the three services as processes, a pager to measure.

``Stack`` is what ``vigil up`` and ``vigil chaos`` run and what end-to-end tests drive. The
effective config every child reads is written to ``<data_dir>/run/vigil.yaml`` with the broker
address filled in, a webhook to our own receiver added (so the run can time each page against the
simulator's ground truth) and fixed health ports, so a restarted service answers where the last
one did. ``supervise()`` restarts whatever died (see ``supervisor.py``); a restarted simulator is
given the first one's start (``--origin``) and resumes the fault schedule instead of repeating it.
``<data_dir>/run/services.json`` says, while the stack runs, where each service answers and how
often it was restarted (``vigil status`` reads it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from vigil.broker import EmbeddedBroker, free_port
from vigil.bus.connection import check_broker
from vigil.bus.kafka import KafkaBus
from vigil.catalog import GPU_TEMPERATURE, GPU_UTILIZATION
from vigil.cli.processes import ProcessGroup, child_pids, reap_children
from vigil.cli.receiver import WebhookReceiver
from vigil.cli.report import score_run
from vigil.cli.serving_view import CanaryView, SimulatedServing
from vigil.cli.settings import VigilConfig, dump_config
from vigil.cli.supervisor import Supervisor, SupervisorEvent
from vigil.codec import decode
from vigil.collectors.sim.config import SimConfig, host_name
from vigil.errors import InvalidEvent, RetryableError
from vigil.events import Detection, FaultInjection, ProbeResult, TelemetryBatch
from vigil.files import private_dir, write_private

log = logging.getLogger(__name__)
PAGER = "vigil-up-pager"  # the measuring webhook notifier every run adds
SERVICES = ("alerting", "analytics", "sim")  # and "canary" when there are probes (the simulated model's)


@dataclass
class HostView:
    gpus: int = 0
    max_temp: float = float("nan")
    mean_util: float = float("nan")
    last_seen: float = 0.0


@dataclass
class FleetView:
    """What the live view shows, filled by the watcher thread from the real topics."""

    hosts: dict[str, HostView] = field(default_factory=dict)
    faults: dict[str, FaultInjection] = field(default_factory=dict)
    samples: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply_batch(self, batch: TelemetryBatch) -> None:
        temps = [i for i, s in enumerate(batch.series) if s.startswith(GPU_TEMPERATURE + "{")]
        utils = [i for i, s in enumerate(batch.series) if s.startswith(GPU_UTILIZATION + "{")]
        last = batch.values[-1]
        with self.lock:
            self.samples += batch.sample_count
            self.hosts[batch.host] = HostView(
                gpus=len(temps),
                max_temp=float(np.max(last[temps])) if temps else float("nan"),
                mean_util=float(np.mean(last[utils])) if utils else float("nan"),
                last_seen=float(batch.ts[-1]),
            )

    def apply_fault(self, fault: FaultInjection) -> None:
        with self.lock:
            if fault.fault_id not in self.faults or fault.end is not None:
                self.faults[fault.fault_id] = fault

    def newest_sample(self) -> float:
        """The timestamp of the newest telemetry read back from the broker (0 before any)."""
        with self.lock:
            return max((hv.last_seen for hv in self.hosts.values()), default=0.0)


class Stack:
    def __init__(self, config: VigilConfig, ephemeral: bool = False) -> None:
        self.config = config
        self.ephemeral = ephemeral
        self.run_dir = config.data_dir / "run"
        self.state_dir = config.data_dir  # where the services keep their state (see start)
        self.processes = ProcessGroup(config.data_dir / "logs")
        self.receiver = WebhookReceiver()
        self.view = FleetView()
        self.canary = CanaryView()
        self.serving: SimulatedServing | None = None
        self.services: tuple[str, ...] = SERVICES
        self.broker: EmbeddedBroker | None = None
        self.supervisor = Supervisor(config.supervision)
        self.started_at = 0.0
        self.sim_origin = 0.0  # the simulator's schedule counts from here, across its restarts
        self.health_ports: dict[str, int] = {}  # service -> the loopback port of its /healthz
        self.config_path = self.run_dir / "vigil.yaml"
        self.services_path = self.run_dir / "services.json"
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> Stack:
        """Broker, receiver, topics, services; if any step fails (or is interrupted), everything
        started so far is stopped before the exception goes on."""
        existing = child_pids()
        try:
            return self._start()
        except BaseException:
            self.stop()
            reap_children(existing)
            raise

    def _start(self) -> Stack:
        self.started_at = time.time()
        self.state_dir = self.services_state_dir()
        kafka = self.config.kafka
        if not kafka.bootstrap_servers:
            embedded = self.config.broker
            self.broker = EmbeddedBroker(
                self.config.data_dir,
                self.ephemeral or embedded.storage == "memory",
                embedded.port,
                embedded.s3_port,
                host=embedded.host,
                advertised_host=embedded.advertised_host,
            ).start()
            kafka = kafka.model_copy(update={"bootstrap_servers": [self.broker.bootstrap]})
        self.receiver.start()
        if self.config.canary.simulated.enabled:
            hosts = [host_name(i) for i in range(self.config.sim.nodes)]
            self.serving = SimulatedServing(self.config.canary.simulated, hosts, self.run_dir).start()
        self.effective = self._effective(kafka)
        if self.effective.canary.probes:
            self.services = (*SERVICES, "canary")
        dump_config(self.effective, self.config_path)
        check_broker(self.effective.kafka)  # a configured broker that is not there: one line, at once
        bus = KafkaBus(self.effective.kafka)
        bus.create_topics(self.effective.topic_partitions())
        self._watcher = threading.Thread(target=self._watch, args=(bus,), name="fleet-watcher", daemon=True)
        self._watcher.start()
        self.sim_origin = time.time()
        for name in self.services:
            self.spawn(name)
        self._supervise_all()
        self._write_services()
        return self

    def _supervise_all(self) -> None:
        if self.broker is not None:
            self.supervisor.watch("broker", self.broker.alive, self.broker.restart_dead, self.broker.describe_exit)
        for name in self.services:
            alive, describe = partial(self.processes.alive, name), partial(self.processes.describe_exit, name)
            self.supervisor.watch(name, alive, partial(self.spawn, name), describe)

    def supervise(self) -> list[SupervisorEvent]:
        """Restart what died (call it every loop turn); ``supervisor.gave_up`` names a crash loop."""
        events = self.supervisor.check()
        if events:
            self._write_services()
        return events

    def _write_services(self) -> None:
        """Where each unit answers, its state and restarts, for ``vigil status`` (written on change)."""
        units = {
            name: {
                "url": f"http://127.0.0.1:{self.health_ports[name]}" if name in self.health_ports else None,
                "state": status.state,
                "restarts": status.restarts,
            }
            for name, status in self.supervisor.status().items()
        }
        body = {"pid": os.getpid(), "started_at": self.started_at, "services": units}
        write_private(self.services_path, json.dumps(body, indent=1), durable=False)

    def services_state_dir(self) -> Path:
        """Where the services keep state: ``data_dir``, or with ``--ephemeral`` a fresh folder in it.

        Service state (analytics snapshots, the alert store) must live exactly as long as the records
        it describes: offsets and firing alerts from an earlier broker would make this run skip
        records and stay silent about alerts it thinks already paged.
        """
        private_dir(self.config.data_dir)
        if not self.ephemeral:
            return self.config.data_dir
        return Path(tempfile.mkdtemp(prefix="ephemeral-", dir=self.config.data_dir))

    def _effective(self, kafka: Any) -> VigilConfig:
        # Python-mode dumps keep Secret values as they are (a JSON dump would redact them).
        alerting = self.config.alerting.model_dump()
        alerting["notifiers"] = [
            *alerting.get("notifiers", []),
            {"type": "webhook", "name": PAGER, "url": self.receiver.url},
        ]
        if alerting.get("receivers"):  # a configured route tree: the measuring pager hears everything too
            alerting["receivers"] = [*alerting["receivers"], {"name": "vigil-up", "notifiers": [PAGER]}]
            route = dict(alerting["route"])
            route["routes"] = [{"receiver": "vigil-up", "continue": True}, *route.get("routes", [])]
            alerting["route"] = route
        if alerting["topology"]["file"] is None and self.config.sim.nodes:
            alerting["topology"]["file"] = str(write_sim_topology(self.config.sim, self.state_dir / "topology.yaml"))
        if alerting["api"]["enabled"]:
            alerting["api"]["port"] = alerting["api"]["port"] or free_port()
            self.health_ports["alerting"] = alerting["api"]["port"]
        self.health_ports["analytics"] = free_port()
        self.health_ports["sim"] = free_port()
        self.health_ports["canary"] = free_port()
        canary = self.config.canary.model_dump()
        if self.serving is not None:
            canary["probes"] = [*canary["probes"], self.serving.probe_path]
            serving = alerting["remediation"]["serving"]
            serving["node_url"] = serving["node_url"] or self.serving.fleet.node_url()  # oip.unload reaches it
        data = self.config.model_dump()
        data.update(kafka=kafka.model_dump(), alerting=alerting, canary=canary, data_dir=str(self.state_dir))
        return VigilConfig.model_validate(data)

    def spawn(self, name: str) -> None:
        args = [name, "--config", str(self.config_path)]
        if name == "sim":
            args += ["--origin", repr(self.sim_origin)]
        if name in ("sim", "analytics", "canary"):
            args += ["--metrics-port", str(self.health_ports[name])]
        self.processes.spawn(name, args)

    def restart(self, name: str) -> None:
        self.processes.stop(name)
        self.spawn(name)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would (failure tests, ``vigil chaos``); ``broker`` kills Tansu itself."""
        if name == "broker":
            if self.broker is None:
                raise ValueError("no embedded broker to kill: bootstrap servers are configured")
            self.broker.kill("tansu")
        else:
            self.processes.kill(name)

    def healthz(self, name: str, timeout_s: float = 1.0) -> dict[str, Any] | None:
        """The service's ``/healthz`` document when it answers 200, else None."""
        port = self.health_ports.get(name)
        if port is None:
            return None
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=timeout_s)
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):  # not answering (yet), or not JSON: not healthy
            return None
        return body if isinstance(body, dict) else None

    def _watch(self, bus: KafkaBus) -> None:
        topics = self.effective.topics()
        names = [topics.telemetry, topics.groundtruth, topics.name("probes"), topics.detections]
        consumer = bus.consumer(names, f"vigil-up-watch-{int(self.started_at)}")
        try:
            while not self._stop.is_set():
                try:
                    records = consumer.poll(0.5)
                except RetryableError as exc:  # the broker is away: the view waits for it
                    log.debug("fleet watcher: %s", exc)
                    self._stop.wait(1.0)
                    continue
                for record in records:
                    self._apply(record.value)
        finally:
            consumer.close()

    def _apply(self, value: bytes) -> None:
        try:
            event = decode(value)
        except InvalidEvent:
            return  # analytics dead-letters and counts it; the view only shows good data
        if isinstance(event, TelemetryBatch) and event.ts[-1] >= self.started_at - 5:
            self.view.apply_batch(event)
        elif isinstance(event, FaultInjection) and event.start >= self.started_at - 5:
            self.view.apply_fault(event)
            if self.serving is not None:
                self.serving.apply_fault(event)
        elif isinstance(event, ProbeResult) and event.ts >= self.started_at - 5:
            self.canary.apply_result(event)
        elif isinstance(event, Detection) and event.ts >= self.started_at - 5:
            self.canary.apply_detection(event)

    def report(self) -> dict[str, Any]:
        with self.view.lock:
            faults = list(self.view.faults.values())
        result = score_run(faults, self.receiver.snapshot())
        result["started_at"] = self.started_at
        result["duration_s"] = round(time.time() - self.started_at, 1)
        result["restarts"] = self.supervisor.restarts
        result["gave_up"] = self.supervisor.gave_up
        result["canary"] = self.canary.report(self.serving)
        return result

    def stop(self) -> None:
        # Producer first, then the consumers drain, then the broker; each stopped by its own PID.
        self.processes.stop_all(["sim", "canary", "analytics", "alerting"])
        with contextlib.suppress(OSError):  # never written (a start that failed early): nothing to remove
            self.services_path.unlink(missing_ok=True)
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(10)
        self.receiver.stop()
        if self.serving is not None:
            self.serving.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.ephemeral:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def write_sim_topology(sim: SimConfig, path: Path, per_rack: int = 4) -> Path:
    """The simulated fleet's failure domains for alerting: racks (and their switches) of ``per_rack``
    nodes, and the one training job on every node (the simulator's)."""
    nodes = [host_name(i) for i in range(sim.nodes)]
    racks = {f"rack-{i // per_rack + 1}": nodes[i : i + per_rack] for i in range(0, len(nodes), per_rack)}
    spec = {
        "gpus_per_node": sim.gpus_per_node,
        "racks": racks,
        "switches": {name.replace("rack", "tor"): members for name, members in racks.items()},
        "jobs": {sim.job_id: nodes},
    }
    write_private(path, yaml.safe_dump(spec, sort_keys=False))
    return path
