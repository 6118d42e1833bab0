"""``vigil sink influx``: the telemetry and detections topics into InfluxDB or VictoriaMetrics."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from prometheus_client import CollectorRegistry

from vigil.cli.common import (
    ConfigOption,
    connect,
    err_console,
    load_or_exit,
    metrics_address_option,
    metrics_port_option,
    service_command,
    setup_logging,
    stop_on_signals,
)
from vigil.cli.extras import require
from vigil.clock import SystemClock
from vigil.selfmetrics import SelfMetricsServer

log = logging.getLogger("vigil.cli")
sink_app = typer.Typer(no_args_is_help=True, help="Sinks: Vigil's topics written into other stores")


def influx(
    config: list[Path] | None = ConfigOption,
    metrics_address: str = metrics_address_option(),
    metrics_port: int = metrics_port_option(),
) -> None:
    """Write telemetry and detections to sink.influx.url as line protocol; offsets are committed once the
    store confirmed the lines. Scale out by running more in the same group."""
    require("sink influx", "sink")
    cfg = load_or_exit(config)
    if cfg.sink.influx.url is None:
        err_console.print("[red]invalid config[/red]: sink.influx.url: required to run the sink")
        raise typer.Exit(2)
    setup_logging(cfg.log_level)
    from vigil.sinks.service import InfluxSink  # influxdb-client is imported by the sink alone

    stop = stop_on_signals()
    registry = CollectorRegistry()
    sink = InfluxSink(connect(cfg), cfg.topics(), cfg.sink.influx, SystemClock(), registry)
    server = SelfMetricsServer(registry, sink.health, host=metrics_address, port=metrics_port).start()
    log.info("sink to %s; self-metrics on %s:%d", sink.store.where, metrics_address, server.port)
    try:
        sink.run(stop)
    finally:
        server.stop()


def register(app: typer.Typer) -> None:
    service_command(sink_app, influx, "influx")
    app.add_typer(sink_app, name="sink")
