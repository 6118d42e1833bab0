"""Everything on one machine: embedded broker, the three services as processes, a pager to measure.

``Stack`` is what ``vigil up`` runs and what end-to-end tests drive (they also kill -9 a service
and restart it). The effective config every child reads is written to ``<data_dir>/run/vigil.yaml``
with the broker address filled in and a webhook to our own receiver added, so the run can time
each page against the simulator's ground truth.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus
from vigil.catalog import GPU_TEMPERATURE, GPU_UTILIZATION
from vigil.cli.processes import ProcessGroup
from vigil.cli.receiver import WebhookReceiver
from vigil.cli.report import score_run
from vigil.cli.settings import VigilConfig, dump_config
from vigil.codec import decode
from vigil.errors import InvalidEvent, RetryableError
from vigil.events import FaultInjection, TelemetryBatch

log = logging.getLogger(__name__)
SERVICES = ("alerting", "analytics", "sim")


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


class Stack:
    def __init__(self, config: VigilConfig, ephemeral: bool = False, sim_duration: float | None = None) -> None:
        self.config = config
        self.ephemeral = ephemeral
        self.sim_duration = sim_duration
        self.run_dir = config.data_dir / "run"
        self.state_dir = config.data_dir  # where the services keep their state (see start)
        self.processes = ProcessGroup(config.data_dir / "logs")
        self.receiver = WebhookReceiver()
        self.view = FleetView()
        self.broker: EmbeddedBroker | None = None
        self.started_at = 0.0
        self.config_path = self.run_dir / "vigil.yaml"
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> Stack:
        self.started_at = time.time()
        self.state_dir = self.services_state_dir()
        kafka = self.config.kafka
        if not kafka.bootstrap_servers:
            self.broker = EmbeddedBroker(
                self.config.data_dir,
                self.ephemeral or self.config.broker.storage == "memory",
                self.config.broker.port,
                self.config.broker.s3_port,
            ).start()
            kafka = kafka.model_copy(update={"bootstrap_servers": [self.broker.bootstrap]})
        self.receiver.start()
        self.effective = self._effective(kafka)
        dump_config(self.effective, self.config_path)
        bus = KafkaBus(self.effective.kafka)
        bus.create_topics(self.effective.topic_partitions())
        self._watcher = threading.Thread(target=self._watch, args=(bus,), name="fleet-watcher", daemon=True)
        self._watcher.start()
        for name in SERVICES:
            self.spawn(name)
        return self

    def services_state_dir(self) -> Path:
        """Where the services keep state: ``data_dir``, or with ``--ephemeral`` a fresh folder in it.

        Service state (analytics snapshots, the alert store) must live exactly as long as the records
        it describes: offsets and firing alerts from an earlier broker would make this run skip
        records and stay silent about alerts it thinks already paged.
        """
        if not self.ephemeral:
            return self.config.data_dir
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="ephemeral-", dir=self.config.data_dir))

    def _effective(self, kafka: Any) -> VigilConfig:
        alerting = self.config.alerting.model_dump(mode="json")
        alerting["notifiers"] = [*alerting.get("notifiers", []), {"type": "webhook", "url": self.receiver.url}]
        data = self.config.model_dump(mode="json")
        data.update(kafka=kafka.model_dump(mode="json"), alerting=alerting, data_dir=str(self.state_dir))
        return VigilConfig.model_validate(data)

    def spawn(self, name: str) -> None:
        args = [name, "--config", str(self.config_path)]
        if name == "sim" and self.sim_duration:
            args += ["--duration", str(self.sim_duration)]
        self.processes.spawn(name, args)

    def restart(self, name: str) -> None:
        self.processes.stop(name)
        self.spawn(name)

    def _watch(self, bus: KafkaBus) -> None:
        topics = self.effective.topics()
        consumer = bus.consumer([topics.telemetry, topics.groundtruth], f"vigil-up-watch-{int(self.started_at)}")
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

    def report(self) -> dict[str, Any]:
        with self.view.lock:
            faults = list(self.view.faults.values())
        result = score_run(faults, self.receiver.snapshot())
        result["started_at"] = self.started_at
        result["duration_s"] = round(time.time() - self.started_at, 1)
        return result

    def stop(self) -> None:
        # Producer first, then the consumers drain, then the broker; each stopped by its own PID.
        self.processes.stop_all(["sim", "analytics", "alerting"])
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(10)
        self.receiver.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.ephemeral:
            shutil.rmtree(self.state_dir, ignore_errors=True)
