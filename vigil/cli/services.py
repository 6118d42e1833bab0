"""One command per service: ``vigil sim``, ``vigil analytics``, ``vigil alerting``, ``check-config``."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import typer
from prometheus_client import CollectorRegistry

from vigil.cli.common import (
    EXIT_USAGE,
    ConfigOption,
    JsonOption,
    connect,
    describe,
    err_console,
    load_or_exit,
    metrics_address_option,
    metrics_port_option,
    service_command,
    setup_logging,
    show,
    stop_on_signals,
)
from vigil.cli.extras import require
from vigil.clock import SystemClock
from vigil.collectors.sim import FleetSimulator, SimulatorRunner
from vigil.selfmetrics import SelfMetricsServer

log = logging.getLogger("vigil.cli")


def check_config(config: list[Path] | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Validate a config file (with its VIGIL_* environment overrides); errors name the key path."""
    from vigil.cli.settings import load_config
    from vigil.errors import ConfigError

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        if as_json:
            show({"ok": False, "config": describe(config), "errors": str(exc).splitlines()}, True)
        else:
            err_console.print(f"[red]invalid config[/red] {describe(config)}:\n{exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    broker: Any = loaded.kafka.bootstrap_servers or "embedded"
    doc = {"ok": True, "config": describe(config), "cluster": loaded.cluster, "broker": broker}
    show(doc, as_json, lambda d: f"[green]ok[/green] {d['config']}: cluster={d['cluster']}, broker={d['broker']}")


def sim(
    config: list[Path] | None = ConfigOption,
    duration: float = typer.Option(0.0, help="seconds to run (0: until stopped)"),
    fast: float = typer.Option(0.0, help="benchmark mode: publish simulated ticks flat out for this many seconds"),
    origin: float = typer.Option(
        0.0, help="epoch seconds the fault schedule counts from (0: now); a restart given the first run's resumes it"
    ),
    metrics_address: str = metrics_address_option(),
    metrics_port: int = metrics_port_option(),
) -> None:
    """Run the fleet simulator in real time, publishing to the configured broker."""
    cfg = load_or_exit(config)
    setup_logging(cfg.log_level)
    stop = stop_on_signals()
    bus = connect(cfg, stop)
    clock = SystemClock()
    registry = CollectorRegistry()
    simulator = FleetSimulator(cfg.sim, origin or clock.now())
    runner = SimulatorRunner(simulator, bus.producer, cfg.topics(), clock, registry)
    health = lambda: {"ok": True, "ticks": runner.ticks, **runner.outage.health()}  # noqa: E731
    server = SelfMetricsServer(registry, health, host=metrics_address, port=metrics_port)
    log.info("sim: /metrics and /healthz on %s", server.start().url)
    try:
        if fast > 0:
            _run_fast(runner, fast, stop)
        else:
            runner.run(stop, duration_s=duration or None)
    finally:
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
    config: list[Path] | None = ConfigOption,
    metrics_address: str = metrics_address_option(),
    metrics_port: int = metrics_port_option(),
) -> None:
    """Run one analytics consumer (scale out by running more in the same group)."""
    require("analytics", "server")
    from vigil.analytics.service import AnalyticsService

    cfg = load_or_exit(config)
    setup_logging(cfg.log_level)
    stop = stop_on_signals()
    registry = CollectorRegistry()
    service = AnalyticsService(
        connect(cfg, stop), cfg.topics(), cfg.analytics, SystemClock(), registry, cfg.data_dir / "analytics" / "state"
    )
    server = SelfMetricsServer(registry, service.health, host=metrics_address, port=metrics_port).start()
    log.info("analytics: /metrics and /healthz on %s", server.url)
    try:
        service.run(stop)
    finally:
        server.stop()


def alerting(
    config: list[Path] | None = ConfigOption,
    metrics_address: str | None = metrics_address_option(None, "alerting.api.host, 127.0.0.1; the API's address"),
    metrics_port: int | None = metrics_port_option(None, "alerting.api.port; the API's port"),
) -> None:
    """Run the alerting service: detections and predictions in, alerts and notifications out, HTTP API."""
    require("alerting", "server")
    from vigil.alerting.service import AlertingService

    # The API serves /metrics and /healthz too, so the service convention's options place it.
    api = {k: v for k, v in (("host", metrics_address), ("port", metrics_port)) if v is not None}
    cfg = load_or_exit(config, {"alerting": {"api": api}} if api else None)
    setup_logging(cfg.log_level)
    stop = stop_on_signals()
    db_path = cfg.alerting.db_path or cfg.data_dir / "alerting" / "alerts.db"
    bus = connect(cfg, stop)
    service = AlertingService(bus, cfg.topics(), cfg.alerting, SystemClock(), CollectorRegistry(), db_path)
    service.run(stop)


def register(app: typer.Typer) -> None:
    app.command("check-config")(check_config)
    service_command(app, sim)
    service_command(app, analytics)
    service_command(app, alerting)
