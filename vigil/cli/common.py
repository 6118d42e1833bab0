"""Pieces every command shares: loading config with a clear error, logging, stopping on signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from vigil.bus.connection import check_broker, quiet_client_logs, wait_for_broker, warn_inline_secrets
from vigil.bus.kafka import KafkaBus
from vigil.errors import ConfigError, VigilError

log = logging.getLogger("vigil.cli")

if TYPE_CHECKING:  # settings imports every service's config; `vigil agent` must not pay for that
    from vigil.cli.settings import VigilConfig

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    help="YAML config file; repeat to merge later files over earlier ones (e.g. a separate secrets file)",
    exists=True,
    dir_okay=False,
)
err_console = Console(stderr=True)


def load_or_exit(paths: list[Path] | None) -> VigilConfig:
    from vigil.cli.settings import load_config

    try:
        return load_config(paths)
    except ConfigError as exc:
        err_console.print(f"[red]invalid config[/red] {describe(paths)}:\n{exc}")
        raise typer.Exit(2) from exc


def describe(paths: list[Path] | None) -> str:
    return " + ".join(str(p) for p in paths) if paths else "(defaults)"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
