"""``vigil agent``: the per-node collector agent (a Kubernetes DaemonSet or a systemd unit).

It reads only its own parts of the config file (common keys, ``kafka``, ``agent``) and imports only
the collectors it runs, so a GPU node pays for neither the other services nor their dependencies;
``vigil check-config`` validates the whole file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from prometheus_client import CollectorRegistry
from pydantic import ConfigDict, Field

from vigil.bus.connection import client_settings, warn_inline_secrets
from vigil.bus.kafka import KafkaBus, KafkaBusProducer
from vigil.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigOption,
    JsonOption,
    describe,
    err_console,
    metrics_address_option,
    metrics_port_option,
    print_json,
    service_command,
    setup_logging,
    stop_on_signals,
)
from vigil.cli.extras import require
from vigil.clock import to_iso
from vigil.codec import encode
from vigil.collectors.agent import Agent, AgentConfig, OnceResult, ProducerFactory
from vigil.collectors.agent.factory import create_collectors, select_collectors
from vigil.collectors.base import CollectorContext
from vigil.config import CommonConfig, KafkaConfig, validate_layers
from vigil.errors import ConfigError
from vigil.events import TelemetryBatch, TrainingStep
from vigil.topics import Topics

log = logging.getLogger("vigil.cli.agent")


class AgentFile(CommonConfig):
    """The parts of the Vigil config file the agent reads (the other sections belong to other services)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)

    def topics(self) -> Topics:
        return Topics(self.kafka.topics.prefix, dict(self.kafka.topics.partitions))

    def spill_dir(self) -> Path:
        return self.agent.buffer.spill_dir or self.data_dir / "agent" / "spill"


def load_agent_file(
    paths: Path | Sequence[Path] | None,
    collectors: str | None = None,
    metrics_port: int | None = None,
    host: str | None = None,
    metrics_address: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AgentFile:
    """The files, then the ``VIGIL_*`` environment, then the command line, validated as one, so a
    host or port given on the command line (a DaemonSet's node name) is checked like the file's own."""
    options = {"host": host, "metrics_port": metrics_port, "metrics_address": metrics_address}
    agent_options = {key: value for key, value in options.items() if value is not None}
    layered = {**(overrides or {}), **({"agent": agent_options} if agent_options else {})}
    loaded = validate_layers(AgentFile, paths, environ, layered)
    if collectors:
        loaded = loaded.model_copy(update={"agent": select_collectors(loaded.agent, collectors)})
    return loaded


def producer_factory(kafka: KafkaConfig, topics: Topics, agent: AgentConfig) -> ProducerFactory:
    """A connect function for the delivery thread: a producer tuned for a node agent."""
    overrides: dict[str, Any] = {
        # One request in flight: a retried request is never overtaken, so order holds with or
        # without idempotence (``kafka.idempotence``, off by default: see KafkaConfig).
        "max_in_flight_requests_per_connection": 1,
        # After an outage, reconnect within seconds, not kafka-python's 30 s backoff ceiling.
        "reconnect_backoff_max_ms": max(100, int(agent.reconnect_backoff_max * 1000)),
        # Connecting and waiting for metadata happen on the delivery thread; keep them short so a
        # shutdown never waits long on a broker that is away.
        "bootstrap_timeout_ms": 5000,
        "max_block_ms": 5000,
    }
    partitions = {topics.name(stream): topics[stream].partitions for stream in ("telemetry", "logs", "training")}

    def connect() -> KafkaBusProducer:
        producer = KafkaBusProducer(kafka, overrides)
        if agent.create_topics:
            try:
                KafkaBus(kafka).create_topics(partitions)
            except Exception as exc:  # noqa: BLE001 - topics may exist, or be the operator's to create
                log.warning("could not make sure the topics exist (%s); sending anyway", exc)
        return producer

    return connect


def agent(
    config: list[Path] | None = ConfigOption,
    collectors: str | None = typer.Option(
        None, "--collectors", help="run exactly these collectors (comma-separated; name=module for your own)"
    ),
    once: bool = typer.Option(False, "--once", help="run every collector once and print what would be published"),
    as_json: bool = JsonOption,
    duration: float = typer.Option(0.0, help="seconds to run, then stop as on SIGTERM (0: until stopped)"),
    metrics_address: str | None = metrics_address_option(None, "agent.metrics_address, 127.0.0.1"),
    metrics_port: int | None = metrics_port_option(None, "agent.metrics_port, 9479"),
    host: str | None = typer.Option(None, "--host", help="the host name to report (default: agent.host)"),
) -> None:
    """Run the node agent: collectors on their intervals, one batch per tick, buffered while the broker is away."""
    require("agent", "agent")
    try:
        cfg = load_agent_file(config, collectors, metrics_port, host, metrics_address)
        setup_logging(cfg.log_level)
        context = CollectorContext(host=cfg.agent.host, cluster=cfg.cluster)
        built = create_collectors(cfg.agent, context)
    except ConfigError as exc:
        err_console.print(f"[red]invalid agent config[/red] {describe(config)}:\n{exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    topics = cfg.topics()
    runner = Agent(
        cfg.agent, built, cluster=cfg.cluster, topics=topics, registry=CollectorRegistry(), spill_dir=cfg.spill_dir()
    )
    if once:
        raise typer.Exit(_print_once(runner.once(), topics, as_json))
    if not cfg.kafka.bootstrap_servers:
        err_console.print("[red]kafka.bootstrap_servers is empty[/red]: point the agent at the cluster's brokers")
        raise typer.Exit(EXIT_USAGE)
    try:
        client_settings(cfg.kafka)  # a TLS file that cannot be used fails now, named, not in the delivery thread
    except ConfigError as exc:
        log.error("%s", exc)
        raise typer.Exit(EXIT_USAGE) from exc
    stop = stop_on_signals()
    if duration > 0:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    if not built:
        log.warning("no collector is enabled: the agent will publish nothing")
    warn_inline_secrets(cfg.kafka)
    log.info("agent on %s: collectors %s, spill in %s", cfg.agent.host, ", ".join(built), cfg.spill_dir())
    runner.run(producer_factory(cfg.kafka, topics, cfg.agent), stop)


def _print_once(result: OnceResult, topics: Topics, as_json: bool) -> int:
    for collector, error, detail in result.errors:
        err_console.print(f"error collector={collector} error={error}" + (f": {detail}" if detail else ""))
    if as_json:
        print_json(_once_document(result, topics))
    else:
        _echo_once(result, topics)
    return EXIT_FAILED if result.errors else EXIT_OK


def _echo_once(result: OnceResult, topics: Topics) -> None:
    batch = result.batch
    if batch is not None:
        typer.echo(_batch_header(batch, topics.telemetry))
        for key, value in zip(batch.series, batch.values[0], strict=True):
            typer.echo(f"{key} {value:g}")
    else:
        typer.echo("# no samples")
    for event in result.logs:
        if isinstance(event, TrainingStep):
            typer.echo(f"# TrainingStep -> {topics.training}: job {event.job_id} rank {event.rank} step {event.step}")
            continue
        code = "" if event.code is None else f" {event.code}"
        typer.echo(f"# LogEvent -> {topics.logs}: {event.kind}{code} {event.gpu_pci or ''} {event.raw}".rstrip())


def _once_document(result: OnceResult, topics: Topics) -> dict[str, Any]:
    """What ``--once --json`` prints: the batch (series -> value; NaN as null), the other events, the errors."""
    batch = result.batch
    doc: dict[str, Any] = {"telemetry": None, "events": [], "errors": []}
    if batch is not None:
        values = {k: (float(v) if v == v else None) for k, v in zip(batch.series, batch.values[0], strict=True)}
        doc["telemetry"] = {
            "topic": topics.telemetry,
            "host": batch.host,
            "cluster": batch.cluster,
            "ts": to_iso(float(batch.ts[0])),
            "encoded_bytes": len(encode(batch)),
            "series": values,
        }
    for event in result.logs:
        topic = topics.training if isinstance(event, TrainingStep) else topics.logs
        fields = {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(event).items()}
        doc["events"].append({"topic": topic, "type": type(event).__name__, **fields})
    doc["errors"] = [{"collector": c, "error": e, "detail": d} for c, e, d in result.errors]
    return doc


def _batch_header(batch: TelemetryBatch, topic: str) -> str:
    size = len(encode(batch))
    return (
        f"# TelemetryBatch host={batch.host} cluster={batch.cluster} ts={to_iso(float(batch.ts[0]))}: "
        f"{len(batch.series)} series, {size} bytes encoded -> {topic}"
    )


def agent_app() -> typer.Typer:
    """The agent command on its own, without the root options (for tests)."""
    app = typer.Typer(add_completion=False)
    app.command()(agent)
    return app


def register(app: typer.Typer) -> None:
    service_command(app, agent)
