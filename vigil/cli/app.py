"""The typer application, built from each command module's ``register``."""

from __future__ import annotations

import typer

import vigil.cli.bench_agent  # noqa: F401 - adds `vigil bench agent` to bench_app
from vigil.cli import agent, bench, services, up


def build_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, help="Vigil: monitoring and AIOps for GPU fleets")
    services.register(app)
    agent.register(app)
    up.register(app)
    bench.register(app)
    return app
