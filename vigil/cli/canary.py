"""``vigil canary`` (the service), ``vigil canary run --json`` (one round) and ``vigil canary check DIR``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console

from vigil.cli.common import (
    EXIT_USAGE,
    SERVICES,
    ConfigOption,
    JsonOption,
    connect,
    err_console,
    load_or_exit,
    metrics_address_option,
    metrics_port_option,
    setup_logging,
    show,
    stop_on_signals,
)
from vigil.cli.extras import require
from vigil.clock import SystemClock
from vigil.errors import ConfigError
from vigil.selfmetrics import SelfMetricsServer

log = logging.getLogger("vigil.cli")
canary_app = typer.Typer(help="Canary inference checks on deployed models")
ProbesOption = typer.Option(None, "--probes", "-p", help="probe files or folders (default: canary.probes)")


@canary_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    config: list[Path] | None = ConfigOption,
    metrics_address: str = metrics_address_option(),
    metrics_port: int = metrics_port_option(),
) -> None:
    """Run the canary service: probes on their schedule and after remediations, results to Kafka."""
    if ctx.invoked_subcommand is not None:
        return
    require("canary", "server")
    from vigil.alerting.canary.service import CanaryService

    cfg = load_or_exit(config)
    setup_logging(cfg.log_level)
    if not cfg.canary.probes:
        err_console.print("[red]canary.probes is empty[/red]: name probe files or folders in the config")
        raise typer.Exit(EXIT_USAGE)
    stop = stop_on_signals()
    registry = CollectorRegistry()
    service = CanaryService(connect(cfg, stop), cfg.topics(), cfg.canary, SystemClock(), registry, cfg.cluster)
    server = SelfMetricsServer(registry, service.health, host=metrics_address, port=metrics_port).start()
    log.info("canary: %d probes; /metrics and /healthz on %s", len(service.probes), server.url)
    try:
        service.run(stop)
    finally:
        server.stop()


@canary_app.command("run")
def run(
    probes: list[Path] | None = ProbesOption,
    config: list[Path] | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """One round of every probe, judged on that round (floors, and each arm against its baseline).
    Exit status 1 when any round failed."""
    require("canary run", "server")
    from vigil.alerting.canary.service import run_once
    from vigil.alerting.canary.spec import load_paths

    paths = probes or load_or_exit(config).canary.probes
    try:
        loaded = load_paths(paths)
    except ConfigError as exc:
        err_console.print(f"[red]invalid probes[/red]:\n{exc}")
        raise typer.Exit(EXIT_USAGE) from None
    out = run_once(loaded, SystemClock().now)
    show(out, as_json, _results)
    if not out["ok"]:
        raise typer.Exit(1)


def _results(out: Mapping[str, Any]) -> str:
    """One line per arm: its target, the version that answered, ok or why not."""
    lines = []
    for probe in out["probes"]:
        for result in probe["results"]:
            state = "[green]ok[/green]" if result["ok"] else f"[red]failed[/red] {result['detail']}"
            lines.append(f"{result['target']} {result['version']}: {state}")
    return "\n".join(lines)


@canary_app.command("check")
def check(paths: list[Path] = typer.Argument(..., help="probe files or folders")) -> None:
    """Validate probe definitions and their golden sets; errors name file, line and key."""
    require("canary check", "server")
    from vigil.alerting.canary.spec import load_paths

    try:
        found = load_paths(paths)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    items = sum(len(p.items) for p in found)
    Console().print(f"[green]ok[/green] {len(found)} probes, {items} golden items: {', '.join(p.name for p in found)}")


def register(app: typer.Typer) -> None:
    # The group's own callback is the service (`vigil canary`); `run` and `check` are one-shot commands.
    app.add_typer(canary_app, name="canary", rich_help_panel=SERVICES)
