"""``vigil eval smd``: a detector with a train-only threshold on any folder in the SMD layout, beside the honest PCA
baseline and the oracle ceilings; ``vigil eval smd-select``: the protocol that chose the default on real labels;
``vigil eval smd-dev``: the earlier train-only study (synthetic incidents) that chose the two earlier defaults."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vigil.analytics.eval import datasets_root
from vigil.cli.common import EXIT_USAGE, JsonOption, data_option, err_console, print_json, show, summary_table
from vigil.cli.extras import require
from vigil.cli.progress import progress
from vigil.errors import VigilError

COLUMNS = (
    "f1",
    "event_recall_at_budget",
    "median_delay_at_budget_min",
    "false_pages_per_day",
    "pca_honest_f1",
    "pca_honest_event_recall_at_budget",
    "pca_oracle_f1",
    "random_f1",
    "precision",
    "recall",
    "pa_f1",
    "auprc",
)
MEAN_COLUMNS = {  # the mean row: which summary key sits under each column
    "f1": "f1_mean",
    "event_recall_at_budget": "event_recall_at_budget_mean",
    "median_delay_at_budget_min": "median_delay_at_budget_min",
    "false_pages_per_day": "false_pages_per_day_mean",
    "pca_honest_f1": "pca_honest_f1_mean",
    "pca_honest_event_recall_at_budget": "pca_honest_event_recall_at_budget_mean",
    "pca_oracle_f1": "pca_oracle_f1_mean",
    "random_f1": "random_f1_mean",
    "pa_f1": "pa_f1_mean",
    "auprc": "auprc_mean",
}


def _fail(what: str, exc: VigilError) -> typer.Exit:
    err_console.print(f"[red]{what}[/red]: {exc}", soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def smd(
    data: Path | None = data_option("folder of <name>_train/_test/_test_label.npy (default: $VIGIL_DATASETS/smd)"),
    machines: str = typer.Option("", "--machines", help="comma-separated names (default: every entity found)"),
    plots: Path | None = typer.Option(None, "--plots", help="write one PNG per entity into this folder"),
    as_json: bool = JsonOption,
    detector: str = typer.Option(
        "", "--detector", help="a setting of `vigil.analytics.eval.smd.DETECTORS` (default: the protocol's choice)"
    ),
    interval: float | None = typer.Option(
        None, "--interval", help="seconds between samples (default: 60 for machine-*, else 300)", min=1e-3
    ),
) -> None:
    """Point-wise F1 and event recall at 1 false alarm/day with train-only thresholds, beside honest and oracle PCA."""
    require("eval smd", "eval")
    started = time.monotonic()
    from vigil.analytics.eval import smd as evaluation  # numpy/sklearn only when the command runs

    folder = data or datasets_root() / "smd"
    names = [n.strip() for n in machines.split(",") if n.strip()]
    chosen = detector or evaluation.DEFAULT_DETECTOR
    try:
        with progress(as_json) as shown:
            results, _ = evaluation.evaluate(folder, names, detector=chosen, interval_s=interval, progress=shown)
    except VigilError as exc:
        raise _fail("cannot evaluate", exc) from exc
    if plots is not None:
        from vigil.analytics.eval.plots import plot_machine

        for result in results:
            plot_machine(result, plots, chosen)
    summary = evaluation.summarise(results, time.monotonic() - started, chosen)  # loading, scoring and plots
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"{folder.name}, {chosen}, {len(results)} entities, {summary['seconds']:.1f} s")
    table.add_column("entity")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for name, figures in summary["machines"].items():
        table.add_row(name, *(_cell(figures[c]) for c in COLUMNS))
    table.add_row("mean", *(_cell(summary[MEAN_COLUMNS[c]]) if c in MEAN_COLUMNS else "" for c in COLUMNS))
    console = Console()
    console.print(table)
    console.print(summary["protocol"])


def smd_select(
    data: Path | None = data_option(
        "SMD+ASD folder to split into selection and confirmation halves (default: $VIGIL_DATASETS/smd)"
    ),
    confirm: list[Path] = typer.Option([], "--confirm", help="further confirmation folders (e.g. jumpstarter)"),
    selection_only: bool = typer.Option(False, "--selection-only", help="score the selection half alone"),
    as_json: bool = JsonOption,
) -> None:
    """The protocol that chose the default: a fixed grid, chosen on one half, confirmed on the rest."""
    require("eval smd-select", "eval")
    from vigil.analytics.eval import smd_select as selection

    try:
        with progress(as_json) as shown:
            folder = data or datasets_root() / "smd"
            result = selection.study(folder, confirm, selection_only=selection_only, progress=shown)
    except VigilError as exc:
        raise _fail("cannot run the selection", exc) from exc
    show(result, as_json, _selection_summary)


def smd_dev(
    data: Path | None = data_option("folder of <name>_train.npy (default: $VIGIL_DATASETS/smd)"),
    machines: str = typer.Option("", "--machines", help="comma-separated names (default: every machine found)"),
    as_json: bool = JsonOption,
) -> None:
    """The earlier train-only study (synthetic incidents in the end of train) behind the two earlier defaults."""
    require("eval smd-dev", "eval")
    from vigil.analytics.eval import smd_dev as study

    names = [n.strip() for n in machines.split(",") if n.strip()]
    try:
        with progress(as_json) as shown:
            shown.phase("the train-only study")
            result = study.study(data or datasets_root() / "smd", names)
    except VigilError as exc:
        raise _fail("cannot run the study", exc) from exc
    show(result, as_json)


def _selection_summary(result: Mapping[str, Any]) -> Table:
    """The choice and its figures per split; the whole grid is in ``--json``."""
    shown = ("winner", "pca_form", "winner_figures", "pca_honest_figures", "seconds")
    keep = {k: v for k, v in result.items() if k in shown}
    return summary_table(keep, title="SMD selection protocol (the full grid: --json)")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def register_smd(eval_app: typer.Typer) -> None:
    eval_app.command("smd")(smd)
    eval_app.command("smd-select")(smd_select)
    eval_app.command("smd-dev")(smd_dev)
