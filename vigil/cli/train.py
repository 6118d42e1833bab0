"""``vigil train``: fit models on a fleet's own history."""

from __future__ import annotations

from pathlib import Path

import typer

from vigil.cli.common import EXIT_USAGE, JsonOption, data_option, err_console, show
from vigil.cli.extras import require
from vigil.cli.progress import progress

train_app = typer.Typer(no_args_is_help=True, help="Train predictors on a fleet's own history")


@train_app.command("disk")
def disk(
    data: Path = data_option("daily SMART CSVs (Backblaze layout), file or folder", ..., exists=True),
    out: Path = typer.Option(Path("disk-model.joblib"), "--out", help="where to write the model"),
    horizon: int = typer.Option(30, help="days ahead a failure counts as predicted"),
    seed: int = typer.Option(0, help="seed of the gradient-boosting fit"),
    as_json: bool = JsonOption,
) -> None:
    """Train the calibrated gradient-boosting disk-failure model; analytics loads it by path."""
    require("train disk", "server")
    from vigil.analytics.predict.disk import GbmModel, disk_features, label_within, read_smart_csv

    paths = sorted(data.rglob("*.csv")) if data.is_dir() else [data]
    try:
        with progress(as_json) as shown:
            shown.phase(f"reading {len(paths)} SMART files")
            frame = read_smart_csv(paths)
            shown.phase(f"labelling {len(frame):,} drive-days ({horizon}-day horizon)")
            labels = label_within(frame, horizon)
            shown.phase(f"fitting on {int(frame['serial_number'].nunique()):,} drives")
            model = GbmModel(horizon_days=horizon, seed=seed).fit(disk_features(frame), labels)
    except ValueError as exc:
        err_console.print(f"[red]cannot train[/red]: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    model.save(out)
    summary = {
        "model": str(out),
        "rows": len(frame),
        "drives": int(frame["serial_number"].nunique()),
        "positive_rows": int(labels.sum()),
        "horizon_days": horizon,
    }
    show(summary, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
