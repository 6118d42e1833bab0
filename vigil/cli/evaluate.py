"""``vigil eval ...``: offline evaluations of the detector library on public benchmarks (DESIGN §9)."""

from __future__ import annotations

import typer

from vigil.cli.evaluate_smd import register_smd

eval_app = typer.Typer(no_args_is_help=True, help="Offline evaluations on public benchmarks")


def register(app: typer.Typer) -> None:
    register_smd(eval_app)
    app.add_typer(eval_app, name="eval")
