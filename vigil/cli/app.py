"""The typer application, built from each command module's ``register``."""

from __future__ import annotations

import typer

from vigil.cli import agent, bench, canary, chaos, evaluate, remediation, services, train, up

# Bench subcommands register themselves on bench.bench_app when imported.
from vigil.cli import bench_agent as _bench_agent  # noqa: F401
from vigil.cli import bench_api as _bench_api  # noqa: F401
from vigil.cli import bench_canary as _bench_canary  # noqa: F401
from vigil.cli import bench_detectors as _bench_detectors  # noqa: F401
from vigil.cli import bench_models as _bench_models  # noqa: F401
from vigil.cli import bench_reporter as _bench_reporter  # noqa: F401


def build_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, help="Vigil: monitoring and AIOps for GPU fleets")
    services.register(app)
    agent.register(app)
    up.register(app)
    chaos.register(app)
    bench.register(app)
    train.register(app)
    evaluate.register(app)
    remediation.register(app)
    canary.register(app)
    return app
