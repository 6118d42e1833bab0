"""One command per service: ``vigil sim``, ``vigil analytics``, ``vigil alerting``, ``check-config``."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console

from vigil.alerting.service import AlertingService
from vigil.analytics.service import AnalyticsService
from vigil.cli.common import ConfigOption, connect, describe, load_or_exit, setup_logging, stop_on_signals
from vigil.clock import SystemClock
from vigil.collectors.sim import FleetSimulator, SimulatorRunner
from vigil.collectors.sim.inbox import ActionInbox
from vigil.selfmetrics import SelfMetricsServer

log = logging.getLogger("vigil.cli")
SIM_GROUP = "vigil-sim"  # the simulator's consumer group on the actions topic
MetricsPort = typer.Option(0, "--metrics-port", help="self-metrics and /healthz port (0: any free)")
# Loopback unless asked: in a pod, 0.0.0.0 lets Prometheus and the kubelet's probes reach it.
MetricsAddress = typer.Option("127.0.0.1", "--metrics-address", help="address the self-metrics server binds")


def check_config(config: list[Path] | None = ConfigOption) -> None:
    """Validate a config file; errors name the key path."""
    loaded = load_or_exit(config)
    Console().print(
        f"[green]ok[/green] {describe(config)}: cluster={loaded.cluster}, "
        f"broker={'embedded' if not loaded.kafka.bootstrap_servers else loaded.kafka.bootstrap_servers}"
    )


def sim(
    config: list[Path] | None = ConfigOption,
    duration: float = typer.Option(0.0, help="seconds to run (0: until stopped)"),
    fast: float = typer.Option(0.0, help="benchmark mode: publish simulated ticks flat out for this many seconds"),
    origin: float = typer.Option(
        0.0, help="epoch seconds the fault schedule counts from (0: now); a restart given the first run's resumes it"
    ),
    metrics_port: int = MetricsPort,
) -> None:
    """Run the fleet simulator in real time, publishing to the configured broker."""
    cfg = load_or_exit(config)
    setup_logging(cfg.log_level)
    stop = stop_on_signals()
    bus = connect(cfg)
    clock = SystemClock()
    registry = CollectorRegistry()
    simulator = FleetSimulator(cfg.sim, origin or clock.now())
    topics = cfg.topics()
    inbox, reading = None, None
    if cfg.sim.actions and fast <= 0:  # the fleet obeys remediation actions (vigil up --remediate)
        inbox = ActionInbox(lambda: bus.consumer([topics.name("actions")], SIM_GROUP))
        reading = threading.Thread(target=inbox.run, args=(stop,), name="sim-actions", daemon=True)
        reading.start()
    runner = SimulatorRunner(simulator, bus.producer, topics, clock, registry, inbox)
    health = lambda: {"ok": True, "ticks": runner.ticks, **runner.outage.health()}  # noqa: E731
    server = SelfMetricsServer(registry, health, port=metrics_port)
    log.info("sim self-metrics on 127.0.0.1:%d", server.start().port)
    try:
        if fast > 0:
            _run_fast(runner, fast, stop)
        else:
            runner.run(stop, duration_s=duration or None)
    finally:
        stop.set()  # the actions thread too, when the run ended by its duration
        if reading is not None:
            reading.join(timeout=5.0)  # its last commit
        runner.producer.close()
        server.stop()


def _run_fast(runner: SimulatorRunner, seconds: float, stop: threading.Event) -> None:
    started = time.monotonic()
    samples = 0
    while not stop.is_set() and time.monotonic() - started < seconds:
        samples += runner.run_fast(50)
    elapsed = time.monotonic() - started
    # The benchmark reads this last line from the producer's log.
    print(json.dumps({"samples": samples, "seconds": elapsed}), flush=True)  # noqa: T201


def analytics(
    config: list[Path] | None = ConfigOption, metrics_port: int = MetricsPort, metrics_address: str = MetricsAddress
) -> None:
    """Run one analytics consumer (scale out by running more in the same group)."""
    cfg = load_or_exit(config)
    setup_logging(cfg.log_level)
    stop = stop_on_signals()
    registry = CollectorRegistry()
    service = AnalyticsService(
        connect(cfg), cfg.topics(), cfg.analytics, SystemClock(), registry, cfg.data_dir / "analytics" / "state"
    )
    server = SelfMetricsServer(registry, service.health, host=metrics_address, port=metrics_port).start()
    log.info("analytics self-metrics on %s:%d", metrics_address, server.port)
    try:
        service.run(stop)
    finally:
        server.stop()


def alerting(config: list[Path] | None = ConfigOption) -> None:
    """Run the alerting service: detections and predictions in, alerts and notifications out, HTTP API."""
    cfg = load_or_exit(config)
    setup_logging(cfg.log_level)
    stop = stop_on_signals()
    db_path = cfg.alerting.db_path or cfg.data_dir / "alerting" / "alerts.db"
    service = AlertingService(connect(cfg), cfg.topics(), cfg.alerting, SystemClock(), CollectorRegistry(), db_path)
    service.run(stop)


def register(app: typer.Typer) -> None:
    app.command("check-config")(check_config)
    app.command()(sim)
    app.command()(analytics)
    app.command()(alerting)
