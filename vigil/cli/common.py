"""Pieces every command shares: the common options and their conventions, loading config with a
clear error, logging, stopping on signals.

The conventions (README "Command line"; ``tests/unit/test_cli_conventions.py`` walks the command
tree and holds every command to them):

- every command and subcommand has a one-line help (its docstring's first line);
- ``--json``: one JSON document on stdout and nothing else there (logs, progress and errors go to
  stderr); without it, a readable table or summary (:func:`show`);
- ``--data``: the data a command reads (a dataset folder or file);
- ``-c/--config`` (or ``VIGIL_CONFIG``), several merged in order, then ``VIGIL_*`` environment
  overrides of any key (``VIGIL_KAFKA__BOOTSTRAP_SERVERS``, ``vigil.config.env_overrides``);
- a long-running service is registered in the :data:`SERVICES` help panel (:func:`service_command`)
  and takes ``--metrics-address`` and ``--metrics-port`` for its HTTP endpoint (``/metrics``,
  ``/healthz``; for alerting, the API that serves both), loopback unless asked;
- ``vigil --log-level LEVEL`` (or ``VIGIL_LOG_LEVEL``) and ``vigil --version`` on the root;
- exit status 0 ok, 1 failure, 2 usage, config or installation error (:data:`EXIT_USAGE`);
  typer's own usage errors are 2 as well.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from vigil.bus.connection import check_broker, quiet_client_logs, wait_for_broker, warn_inline_secrets
from vigil.bus.kafka import KafkaBus
from vigil.errors import ConfigError, VigilError

log = logging.getLogger("vigil.cli")

if TYPE_CHECKING:  # settings imports every service's config; `vigil agent` must not pay for that
    from vigil.cli.settings import VigilConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SERVICES = "Services"  # the help panel of the long-running services

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    envvar="VIGIL_CONFIG",
    help="YAML config file; repeat to merge later files over earlier ones (e.g. a separate secrets file) "
    "(or VIGIL_CONFIG: paths separated by ':')",
    exists=True,
    dir_okay=False,
    show_envvar=False,
)
JsonOption = typer.Option(
    False, "--json", help="print one JSON document on stdout and nothing else there (default: a readable summary)"
)


def data_option(what: str, default: Any = None, **kwargs: Any) -> Any:
    """``--data``: what the command reads. ``what`` says what it is and where it is by default."""
    return typer.Option(default, "--data", help=what, **kwargs)


def metrics_address_option(default: str | None = "127.0.0.1", source: str = "") -> Any:
    where = f" (default: {source})" if source else ""
    # Loopback unless asked: in a pod, 0.0.0.0 lets Prometheus and the kubelet's probes reach it.
    return typer.Option(default, "--metrics-address", help=f"address of /metrics and /healthz{where}")


def metrics_port_option(default: int | None = 0, source: str = "") -> Any:
    where = f" (default: {source})" if source else " (0: any free port)"
    return typer.Option(default, "--metrics-port", help=f"port of /metrics and /healthz{where}")


def service_command(app: typer.Typer, fn: Callable[..., Any], name: str | None = None) -> None:
    """Register a long-running service: listed under "Services", held to the service conventions."""
    app.command(name, rich_help_panel=SERVICES)(fn)


def print_json(doc: Any) -> None:
    """The ``--json`` output: one document on stdout."""
    typer.echo(json.dumps(doc, indent=2))


Render = Callable[[Mapping[str, Any]], RenderableType]


def show(doc: Mapping[str, Any], as_json: bool, render: Render | None = None) -> None:
    """``doc`` as JSON (``--json``), else as ``render(doc)`` or a table of its figures."""
    if as_json:
        print_json(doc)
    else:
        Console().print(render(doc) if render else summary_table(doc))


def summary_table(doc: Mapping[str, Any], title: str | None = None) -> Table:
    """A two-column table of a document's values; nested mappings become dotted keys."""
    table = Table(title=title, show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in _flatten(doc):
        table.add_row(key, _cell(value))
    return table


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


# soft_wrap: an error is one line however long its paths are (grep-able, copyable); the terminal wraps it.
err_console = Console(stderr=True, soft_wrap=True)


def load_or_exit(paths: list[Path] | None, overrides: Mapping[str, Any] | None = None) -> VigilConfig:
    """The config (files, ``VIGIL_*`` environment, then ``overrides`` from the command's options),
    or exit 2 with the key path of what is wrong."""
    from vigil.cli.settings import load_config

    try:
        return load_config(paths, dict(overrides or {}))
    except ConfigError as exc:
        err_console.print(f"[red]invalid config[/red] {describe(paths)}:\n{exc}")
        raise typer.Exit(EXIT_USAGE) from exc


def describe(paths: list[Path] | None) -> str:
    return " + ".join(str(p) for p in paths) if paths else "(defaults)"


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; called again (the root's ``--log-level``, then the config's) it
    only changes the level."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())
    quiet_client_logs(level)
    # httpx logs every request's full URL at INFO, and a webhook URL may carry its token.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def stop_on_signals() -> threading.Event:
    """An Event set by SIGINT or SIGTERM, so services drain and commit instead of dying mid-batch."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Inside the block, the first SIGINT or SIGTERM raises ``KeyboardInterrupt`` wherever the main
    thread is (a start-up to abandon, not to finish first); later ones are ignored, so the clean-up
    the exception runs is not cut short. The previous handlers are back after the block."""
    interrupted = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def connect(config: VigilConfig, stop: threading.Event | None = None) -> KafkaBus:
    """The configured broker, with every topic there. A service (given ``stop``) started before its
    broker waits for it, logging one line when the wait starts and one when it ends; a one-shot
    command (no ``stop``) fails at once. Failures are one line naming the key: exit 1 (2: config)."""
    kafka = config.kafka
    if not kafka.bootstrap_servers:
        err_console.print(
            "[red]kafka.bootstrap_servers is empty[/red]: run `vigil up`, or point the config at a broker"
        )
        raise typer.Exit(2)
    warn_inline_secrets(kafka)
    try:
        if stop is None:
            check_broker(kafka)
        elif not wait_for_broker(kafka, stop):
            raise typer.Exit(0)  # asked to stop while waiting: nothing was started
        bus = KafkaBus(kafka)
        bus.create_topics(config.topic_partitions())
    except VigilError as exc:  # unreachable, refused, topics missing, or a TLS file that cannot be used
        log.error("%s", exc)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from exc
    return bus
