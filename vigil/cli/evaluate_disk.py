"""``vigil eval disk``: failing-drive recall at a fixed false-positive rate, beside the SMART rule."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from vigil.analytics.eval import datasets_root


def register_disk(eval_app: typer.Typer) -> None:
    @eval_app.command("disk")
    def disk(
        data: Path | None = typer.Option(None, "--data", help="SMART data [$VIGIL_DATASETS/alibaba_ssd_failures]"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
        horizon: int = typer.Option(30, help="days before failure a flag counts"),
        lead: int = typer.Option(1, help="a flag must come at least this many days before the failure"),
        fpr: float = typer.Option(0.01, help="target drive-level false-positive rate"),
        plots: Path | None = typer.Option(None, "--plots", help="folder for PNG plots"),
        seed: int = typer.Option(0),
    ) -> None:
        from vigil.analytics.eval.disk import evaluate

        if data is None:
            data = datasets_root() / "alibaba_ssd_failures"
        if not data.exists():
            typer.echo(f"no SMART data at {data}", err=True)
            raise typer.Exit(2)
        result = evaluate(data, horizon=horizon, lead=lead, target_fpr=fpr, seed=seed, plots=plots)
        typer.echo(json.dumps(result, indent=None if json_out else 2))
