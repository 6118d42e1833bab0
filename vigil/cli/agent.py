"""``vigil agent``: the per-node collector agent (a Kubernetes DaemonSet or a systemd unit).

It reads only its own parts of the config file (common keys, ``kafka``, ``agent``) and imports only
the collectors it runs, so a GPU node pays for neither the other services nor their dependencies;
``vigil check-config`` validates the whole file. ``vigil.cli.main`` builds this command alone when
the first argument is ``agent``, for the same reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from prometheus_client import CollectorRegistry
from pydantic import ConfigDict, Field

from vigil.bus.kafka import KafkaBus, KafkaBusProducer
from vigil.cli.common import ConfigOption, describe, err_console, setup_logging, stop_on_signals
from vigil.clock import to_iso
from vigil.codec import encode
from vigil.collectors.agent import Agent, AgentConfig, OnceResult, ProducerFactory
from vigil.collectors.agent.factory import create_collectors, select_collectors
from vigil.collectors.base import CollectorContext
from vigil.config import CommonConfig, KafkaConfig, load_yaml_files, validate
from vigil.errors import ConfigError
from vigil.events import TelemetryBatch, TrainingStep, TrainingStepBatch
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
) -> AgentFile:
    data = load_yaml_files(paths)
    section = data.get("agent") or {}
    if host and isinstance(section, dict):
        # Before validation, so the host given on the command line (a DaemonSet's node name) is checked
        # like the file's own.
        data = {**data, "agent": {**section, "host": host}}
    loaded = validate(AgentFile, data)
    agent = loaded.agent
    if collectors:
        agent = select_collectors(agent, collectors)
    if metrics_port is not None:
        agent = agent.model_copy(update={"metrics_port": metrics_port})
    return loaded.model_copy(update={"agent": agent})


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
    duration: float = typer.Option(0.0, help="seconds to run, then stop as on SIGTERM (0: until stopped)"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="self-metrics and /healthz port"),
    host: str | None = typer.Option(None, "--host", help="the host name to report (default: agent.host)"),
) -> None:
    """Run the node agent: collectors on their intervals, one batch per tick, buffered while the broker is away."""
    try:
        cfg = load_agent_file(config, collectors, metrics_port, host)
        setup_logging(cfg.log_level)
        # The agent logs the broker's state itself, once per change; kafka-python logs every
        # failed reconnect at ERROR.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        context = CollectorContext(host=cfg.agent.host, cluster=cfg.cluster)
        built = create_collectors(cfg.agent, context)
    except ConfigError as exc:
        err_console.print(f"[red]invalid agent config[/red] {describe(config)}:\n{exc}")
        raise typer.Exit(2) from exc
    topics = cfg.topics()
    runner = Agent(
        cfg.agent, built, cluster=cfg.cluster, topics=topics, registry=CollectorRegistry(), spill_dir=cfg.spill_dir()
    )
    if once:
        raise typer.Exit(_print_once(runner.once(), topics))
    if not cfg.kafka.bootstrap_servers:
        err_console.print("[red]kafka.bootstrap_servers is empty[/red]: point the agent at the cluster's brokers")
        raise typer.Exit(2)
    stop = stop_on_signals()
    if duration > 0:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    if not built:
        log.warning("no collector is enabled: the agent will publish nothing")
    log.info("agent on %s: collectors %s, spill in %s", cfg.agent.host, ", ".join(built), cfg.spill_dir())
    runner.run(producer_factory(cfg.kafka, topics, cfg.agent), stop)


def _print_once(result: OnceResult, topics: Topics) -> int:
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
        if isinstance(event, TrainingStepBatch):
            ranks = ",".join(str(r) for r in event.rank.tolist())
            typer.echo(f"# TrainingStepBatch -> {topics.training}: job {event.job_id} ranks {ranks} steps "
                       f"{event.step.min()}..{event.step.max()}")
            continue
        code = "" if event.code is None else f" {event.code}"
        typer.echo(f"# LogEvent -> {topics.logs}: {event.kind}{code} {event.gpu_pci or ''} {event.raw}".rstrip())
    for collector, error, detail in result.errors:
        err_console.print(f"error collector={collector} error={error}" + (f": {detail}" if detail else ""))
    return 1 if result.errors else 0


def _batch_header(batch: TelemetryBatch, topic: str) -> str:
    size = len(encode(batch))
    return (
        f"# TelemetryBatch host={batch.host} cluster={batch.cluster} ts={to_iso(float(batch.ts[0]))}: "
        f"{len(batch.series)} series, {size} bytes encoded -> {topic}"
    )


def agent_app() -> typer.Typer:
    """The agent command on its own (what ``vigil agent`` runs; see ``vigil.cli.main``)."""
    app = typer.Typer(add_completion=False)
    app.command()(agent)
    return app


def register(app: typer.Typer) -> None:
    app.command()(agent)
