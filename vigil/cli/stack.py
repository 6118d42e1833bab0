"""Everything on one machine: embedded broker, the services as processes, a pager to measure.

``Stack`` is what ``vigil up`` and ``vigil chaos`` run and what end-to-end tests drive. The
effective config every child reads is written to ``<data_dir>/run/vigil.yaml`` with the broker
address filled in, a webhook to our own receiver added (so the run can time each page against the
simulator's ground truth), remediation against the simulated fleet (dry-run, or execute with
``remediate``: see ``demo.py``) and fixed health ports, so a restarted service answers where the last
one did. ``supervise()`` restarts whatever died (see ``supervisor.py``); a restarted simulator is
given the first one's start (``--origin``) and resumes the fault schedule instead of repeating it.
With ``sink.influx.enabled`` the Influx sink runs beside them, supervised the same way.

The watcher thread reads back what the run produced (telemetry, ground truth, training steps,
remediation runs) for the live view and the report (``report.py``).
``<data_dir>/run/services.json`` says, while the stack runs, where each service answers and how
often it was restarted (``vigil status`` reads it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
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
from vigil.cli.demo import with_remediation
from vigil.cli.processes import ProcessGroup, child_pids, reap_children
from vigil.cli.receiver import WebhookReceiver
from vigil.cli.report import Progress, score_run
from vigil.cli.serving_view import CanaryView, SimulatedServing
from vigil.cli.settings import VigilConfig, dump_config
from vigil.cli.supervisor import Supervisor, SupervisorEvent
from vigil.codec import decode
from vigil.collectors.sim.config import SimConfig, host_name
from vigil.errors import InvalidEvent, RetryableError
from vigil.events import (
    Detection,
    FaultInjection,
    ProbeResult,
    RemediationRun,
    TelemetryBatch,
    TrainingStep,
    TrainingStepBatch,
)
from vigil.files import private_dir, write_private
from vigil.secret import Secret

log = logging.getLogger(__name__)
PAGER = "vigil-up-pager"  # the measuring webhook notifier every run adds
SERVICES = ("alerting", "analytics", "sim")  # and "canary" when there are probes, "sink" when enabled
DRAIN_S = 10.0  # at most this long, after the services stopped, for the watcher to read what they left


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
    runs: dict[str, RemediationRun] = field(default_factory=dict)  # the latest state of each run
    progress: dict[str, Progress] = field(default_factory=dict)  # per job, from rank 0's steps
    samples: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply_step(self, step: TrainingStep) -> None:
        if step.rank != 0:
            return  # every rank completes every step
        with self.lock:
            self.progress.setdefault(step.job_id, Progress()).add(step.step, step.step_time_s, step.ts)

    def apply_steps(self, batch: TrainingStepBatch, since: float) -> None:
        """Rank 0's rows of a batch (every rank completes every step): a row per step, not per rank."""
        rows = np.flatnonzero((batch.rank == 0) & (batch.ts >= since))
        with self.lock:
            progress = self.progress.setdefault(batch.job_id, Progress())
            for i in rows.tolist():
                progress.add(int(batch.step[i]), float(batch.step_time_s[i]), float(batch.ts[i]))

    def apply_run(self, run: RemediationRun) -> None:
        with self.lock:
            seen = self.runs.get(run.run_id)
            if seen is None or run.ts >= seen.ts:
                self.runs[run.run_id] = run

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
    def __init__(self, config: VigilConfig, ephemeral: bool = False, remediate: bool = False) -> None:
        self.config = config
        self.ephemeral = ephemeral
        self.remediate = remediate  # remediation in execute mode (else dry-run)
        self.run_dir = config.data_dir / "run"
        self.state_dir = config.data_dir  # where the services keep their state (see start)
        self.processes = ProcessGroup(config.data_dir / "logs")
        self.receiver = WebhookReceiver()
        self.view = FleetView()
        self.canary = CanaryView()
        self.serving: SimulatedServing | None = None
        self._with_canary = False  # set at start when the effective config has probes
        self.broker: EmbeddedBroker | None = None
        self.supervisor = Supervisor(config.supervision)
        self.started_at = 0.0
        self.sim_origin = 0.0  # the simulator's schedule counts from here, across its restarts
        self.health_ports: dict[str, int] = {}  # service -> the loopback port of its /healthz
        self.ui_token: str | None = None  # the admin token made for this run's web UI, if none was configured
        self.config_path = self.run_dir / "vigil.yaml"
        self.services_path = self.run_dir / "services.json"
        self._stop = threading.Event()
        self._draining = threading.Event()
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
            self._with_canary = True
        dump_config(self.effective, self.config_path)
        check_broker(self.effective.kafka)  # a configured broker that is not there: one line, at once
        bus = KafkaBus(self.effective.kafka)
        bus.create_topics(self.effective.topic_partitions())
        self._watcher = threading.Thread(target=self._watch, args=(bus,), name="fleet-watcher", daemon=True)
        self._watcher.start()
        self.sim_origin = time.time()
        for name in self.services():
            self.spawn(name)
        self._supervise_all()
        self._write_services()
        return self

    def _supervise_all(self) -> None:
        if self.broker is not None:
            self.supervisor.watch("broker", self.broker.alive, self.broker.restart_dead, self.broker.describe_exit)
        for name in self.services():
            alive, describe = partial(self.processes.alive, name), partial(self.processes.describe_exit, name)
            self.supervisor.watch(name, alive, partial(self.spawn, name), describe)

    def services(self) -> tuple[str, ...]:
        """The child processes this stack runs: the three services, the canary when there are probes,
        and the Influx sink when enabled."""
        canary = ("canary",) if self._with_canary else ()
        return SERVICES + canary + (("sink",) if self.config.sink.influx.enabled else ())

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
        alerting = with_remediation(self.config.alerting.model_dump(), self.config.sim, self.remediate)
        robots = [n["name"] for n in alerting["notifiers"] if n.get("type") == "remediation" and n.get("name")]
        alerting["notifiers"] = [
            *alerting["notifiers"],
            {"type": "webhook", "name": PAGER, "url": self.receiver.url},
        ]
        if alerting.get("receivers"):  # a configured route tree: the measuring pager hears everything too
            # and so does a remediation receiver that is not in the tree (the demo's), as without a tree
            routed = {name for r in alerting["receivers"] for name in r.get("notifiers") or []}
            heard = [PAGER, *(name for name in robots if name not in routed)]
            alerting["receivers"] = [*alerting["receivers"], {"name": "vigil-up", "notifiers": heard}]
            route = dict(alerting["route"])
            route["routes"] = [{"receiver": "vigil-up", "continue": True}, *route.get("routes", [])]
            alerting["route"] = route
        if alerting["topology"]["file"] is None and self.config.sim.nodes:
            alerting["topology"]["file"] = str(write_sim_topology(self.config.sim, self.state_dir / "topology.yaml"))
        if alerting["api"]["enabled"]:
            alerting["api"]["port"] = alerting["api"]["port"] or free_port()
            self.health_ports["alerting"] = alerting["api"]["port"]
            if alerting["api"]["admin_token"] is None:  # a token for this run's web UI (shown by vigil up)
                self.ui_token = secrets.token_urlsafe(32)
                alerting["api"]["admin_token"] = Secret(self.ui_token)
        self.health_ports["analytics"] = free_port()
        self.health_ports["sim"] = free_port()
        if self.config.sink.influx.enabled:
            self.health_ports["sink"] = free_port()
        self.health_ports["canary"] = free_port()
        canary = self.config.canary.model_dump()
        if self.serving is not None:
            canary["probes"] = [*canary["probes"], self.serving.probe_path]
            # The demo's remediation section (vigil up's own, when the config enables none) has no serving part.
            serving = alerting["remediation"].setdefault("serving", {})
            serving["node_url"] = serving.get("node_url") or self.serving.fleet.node_url()  # oip.unload reaches it
        data = self.config.model_dump()
        data.update(kafka=kafka.model_dump(), alerting=alerting, canary=canary, data_dir=str(self.state_dir))
        return VigilConfig.model_validate(data)

    def spawn(self, name: str) -> None:
        command = ["sink", "influx"] if name == "sink" else [name]
        args = [*command, "--config", str(self.config_path)]
        if name == "sim":
            args += ["--origin", repr(self.sim_origin)]
        if name in ("sim", "analytics", "sink", "canary"):
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
        streams = [topics.telemetry, topics.groundtruth, topics.training, topics.name("remediation")]
        streams += [topics.name("probes"), topics.detections]
        consumer = bus.consumer(streams, f"vigil-up-watch-{int(self.started_at)}")
        try:
            while not self._stop.is_set():
                try:
                    records = consumer.poll(0.5, 2000)
                except RetryableError as exc:  # the broker is away: the view waits for it
                    log.debug("fleet watcher: %s", exc)
                    self._stop.wait(1.0)
                    continue
                if not records and self._draining.is_set():
                    return  # the services stopped and everything they published has been read
                for record in records:
                    self._apply(record.value)
        finally:
            consumer.close()

    def _apply(self, value: bytes) -> None:
        try:
            event = decode(value)
        except InvalidEvent:
            return  # analytics dead-letters and counts it; the view only shows good data
        since = self.started_at - 5  # a durable broker holds earlier runs' records too
        if isinstance(event, TrainingStepBatch):
            self.view.apply_steps(event, since)
        elif isinstance(event, TrainingStep):
            if event.ts >= since:
                self.view.apply_step(event)
        elif isinstance(event, TelemetryBatch) and event.ts[-1] >= since:
            self.view.apply_batch(event)
        elif isinstance(event, FaultInjection) and event.start >= since:
            self.view.apply_fault(event)
            if self.serving is not None:
                self.serving.apply_fault(event)
        elif isinstance(event, ProbeResult) and event.ts >= self.started_at - 5:
            self.canary.apply_result(event)
        elif isinstance(event, Detection) and event.ts >= self.started_at - 5:
            self.canary.apply_detection(event)
        elif isinstance(event, RemediationRun) and event.ts >= since:
            self.view.apply_run(event)

    def report(self) -> dict[str, Any]:
        with self.view.lock:
            faults = list(self.view.faults.values())
            runs = [_run_row(r) for r in sorted(self.view.runs.values(), key=lambda r: r.ts)]
            end = max((hv.last_seen for hv in self.view.hosts.values()), default=0.0)
            training = {job: p.summary(end) for job, p in self.view.progress.items()}
        result = score_run(faults, self.receiver.snapshot())
        for row in result["faults"]:
            row["run_state"] = _run_state(row, runs)
        result["started_at"] = self.started_at
        result["duration_s"] = round(time.time() - self.started_at, 1)
        result["restarts"] = self.supervisor.restarts
        result["gave_up"] = self.supervisor.gave_up
        # The simulator runs one job; with several, the run's ETTR is that of the first by name.
        result["ettr"] = next((training[job]["ettr"] for job in sorted(training)), None)
        result["training"] = training
        result["remediation"] = {"mode": "execute" if self.remediate else "dry_run", "runs": runs}
        result["canary"] = self.canary.report(self.serving)
        return result

    def stop(self) -> None:
        # Producer first, then the consumers drain (the sink last: it writes the last detections too),
        # then the broker; each stopped by its own PID.
        self.processes.stop_all(["sim", "canary", "analytics", "alerting", "sink"])
        with contextlib.suppress(OSError):  # never written (a start that failed early): nothing to remove
            self.services_path.unlink(missing_ok=True)
        if self._watcher is not None:
            self._draining.set()  # read what the services published last, for the report
            self._watcher.join(DRAIN_S)
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


def _run_row(run: RemediationRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "runbook": run.runbook,
        "host": run.labels.get("host"),
        "gpu_index": run.labels.get("gpu_index"),
        "xid": run.labels.get("xid"),
        "mode": run.mode,
        "state": run.state,
        "updated_at": run.ts,
        "reason": run.reason,
        "steps": [{"name": s.name, "state": s.state, "detail": s.detail} for s in run.steps],
    }


def _run_state(fault: dict[str, Any], runs: list[dict[str, Any]]) -> str | None:
    """The state of the newest remediation run about the fault's GPU and XID, if any."""
    where = (fault["entity"].get("host"), fault["entity"].get("gpu_index"), fault["kind"].removeprefix("xid"))
    mine = [r for r in runs if (r["host"], r["gpu_index"], r["xid"]) == where]
    return mine[-1]["state"] if mine else None


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
