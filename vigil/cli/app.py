"""The typer application, built from each command module's ``register``, and the root options
(``--version``, ``--log-level``). Building it imports no service: each command imports what it runs."""

from __future__ import annotations

import os
from enum import StrEnum

import typer

from vigil.cli.common import setup_logging

EPILOG = "Exit status: 0 ok, 1 failure, 2 usage, config or installation error (a missing extra)."


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from vigil import __version__
    from vigil.cli.extras import DISTRIBUTION

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that is not installed
        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vigil {version()}")
        raise typer.Exit()


def root(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
    log_level: LogLevel | None = typer.Option(
        None,
        "--log-level",
        envvar="VIGIL_LOG_LEVEL",
        case_sensitive=False,
        help="log level on stderr, over the config's log_level (or VIGIL_LOG_LEVEL)",
        show_envvar=False,
    ),
) -> None:
    """Vigil: monitoring and AIOps for GPU fleets."""
    if log_level is not None:
        # Through the environment, where the config's own override of log_level reads it: the
        # command's config then holds it, and so do the effective configs of its children.
        os.environ["VIGIL_LOG_LEVEL"] = log_level.value
        setup_logging(log_level.value)


def build_app(only: str | None = None) -> typer.Typer:
    """Every command, or with ``only="agent"`` the node agent's alone: a GPU node's process then
    imports nothing of the other services, not even their config models (``vigil.cli.main``)."""
    app = typer.Typer(no_args_is_help=True, add_completion=False, epilog=EPILOG)
    app.callback()(root)
    if only == "agent":
        from vigil.cli import agent

        agent.register(app)
        return app
    from vigil.cli import (
        agent,
        bench,
        canary,
        chaos,
        dashboards,
        evaluate,
        remediation,
        services,
        sink,
        status,
        tokens,
        train,
        up,
    )

    # Bench subcommands register themselves on bench.bench_app when imported.
    from vigil.cli import bench_agent as _bench_agent  # noqa: F401
    from vigil.cli import bench_alerting as _bench_alerting  # noqa: F401
    from vigil.cli import bench_api as _bench_api  # noqa: F401
    from vigil.cli import bench_canary as _bench_canary  # noqa: F401
    from vigil.cli import bench_detectors as _bench_detectors  # noqa: F401
    from vigil.cli import bench_models as _bench_models  # noqa: F401
    from vigil.cli import bench_remediation as _bench_remediation  # noqa: F401
    from vigil.cli import bench_reporter as _bench_reporter  # noqa: F401
    from vigil.cli import bench_sink as _bench_sink  # noqa: F401

    services.register(app)
    sink.register(app)
    agent.register(app)
    up.register(app)
    status.register(app)
    dashboards.register(app)
    chaos.register(app)
    bench.register(app)
    train.register(app)
    evaluate.register(app)
    tokens.register(app)
    remediation.register(app)
    canary.register(app)
    return app
