"""``vigil train``: fit models on a fleet's own history."""

from __future__ import annotations

import json
from pathlib import Path

import typer

train_app = typer.Typer(no_args_is_help=True, help="Train predictors on a fleet's own history")


@train_app.command("disk")
def disk(
    data: Path = typer.Option(..., "--data", exists=True, help="daily SMART CSVs (Backblaze layout), file or folder"),
    out: Path = typer.Option(Path("disk-model.joblib"), "--out", help="where to write the model"),
    horizon: int = typer.Option(30, help="days ahead a failure counts as predicted"),
    seed: int = typer.Option(0),
) -> None:
    """Train the calibrated gradient-boosting disk-failure model; analytics loads it by path."""
    from vigil.analytics.models.predict.disk import GbmModel, disk_features, label_within, read_smart_csv

    paths = sorted(data.rglob("*.csv")) if data.is_dir() else [data]
    try:
        frame = read_smart_csv(paths)
        labels = label_within(frame, horizon)
        model = GbmModel(horizon_days=horizon, seed=seed).fit(disk_features(frame), labels)
    except ValueError as exc:
        typer.echo(f"cannot train: {exc}", err=True)
        raise typer.Exit(2) from exc
    model.save(out)
    summary = {"model": str(out), "rows": len(frame), "drives": int(frame["serial_number"].nunique()),
               "positive_rows": int(labels.sum()), "horizon_days": horizon}
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
