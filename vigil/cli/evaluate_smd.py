"""``vigil eval smd``: a detector (MSPC frozen, or adaptive MSPC) on SMD/ASD with train-only thresholds, beside its
baselines; ``vigil eval smd-dev``: the train-only study that chose the default."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vigil.analytics.eval import datasets_root
from vigil.errors import VigilError

COLUMNS = (
    "f1",
    "pca_oracle_f1",
    "random_f1",
    "precision",
    "recall",
    "pa_f1",
    "random_pa_f1",
    "pak_auc",
    "event_recall",
    "false_alarms_per_day",
    "median_delay_min",
    "auprc",
)


def smd(
    data: Path | None = typer.Option(
        None, "--data", help="folder of <name>_train/_test/_test_label.npy (default: $VIGIL_DATASETS/smd)"
    ),
    machines: str = typer.Option("", "--machines", help="comma-separated names (default: every machine found)"),
    plots: Path | None = typer.Option(None, "--plots", help="write one PNG per machine into this folder"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as one JSON object"),
    detector: str = typer.Option(
        "", "--detector", help="mspc or adaptive_mspc (default: the one the train-only study `smd-dev` chose)"
    ),
) -> None:
    """Point-wise F1 (no point adjustment) with train-only thresholds vs PCA with an oracle threshold."""
    started = time.monotonic()
    from vigil.analytics.eval import smd as evaluation  # numpy/sklearn only when the command runs

    folder = data or datasets_root() / "smd"
    names = [n.strip() for n in machines.split(",") if n.strip()]
    try:
        chosen = detector or evaluation.DEFAULT_DETECTOR
        results, _ = evaluation.evaluate(folder, names, detector=chosen)
    except VigilError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]cannot evaluate[/red]: {exc}")
        raise typer.Exit(2) from exc
    if plots is not None:
        from vigil.analytics.eval.plots import plot_machine

        for result in results:
            plot_machine(result, plots, chosen)
    summary = evaluation.summarise(results, time.monotonic() - started, chosen)  # loading, scoring and plots
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"SMD/ASD, {chosen}, {len(results)} machines, {summary['seconds']:.1f} s")
    table.add_column("machine")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for name, figures in summary["machines"].items():
        table.add_row(name, *(_cell(figures[c]) for c in COLUMNS))
    table.add_row(
        "mean",
        _cell(summary["f1_mean"]),
        _cell(summary["pca_oracle_f1_mean"]),
        _cell(summary["random_f1_mean"]),
        *([""] * (len(COLUMNS) - 3)),
    )
    console = Console()
    console.print(table)
    console.print(summary["protocol"])


def smd_dev(
    data: Path | None = typer.Option(None, "--data", help="folder of <name>_train.npy (default: $VIGIL_DATASETS/smd)"),
    machines: str = typer.Option("", "--machines", help="comma-separated names (default: every machine found)"),
) -> None:
    """The train-only study that chose the detector variant: synthetic incidents in the end of train (JSON)."""
    from vigil.analytics.eval import smd_dev as study

    names = [n.strip() for n in machines.split(",") if n.strip()]
    try:
        result = study.study(data or datasets_root() / "smd", names)
    except VigilError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]cannot run the study[/red]: {exc}")
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, indent=2))


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def register_smd(eval_app: typer.Typer) -> None:
    eval_app.command("smd")(smd)
    eval_app.command("smd-dev")(smd_dev)
