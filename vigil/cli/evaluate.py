"""``vigil eval ...``: detectors scored on public labelled benchmarks. Each benchmark adds a command
to :data:`eval_app`; the work lives in ``vigil.analytics.eval``, the commands only parse options."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vigil.analytics.eval import datasets_root
from vigil.cli.common import EXIT_USAGE, JsonOption, data_option, err_console
from vigil.cli.evaluate_disk import register_disk
from vigil.cli.evaluate_smd import register_smd
from vigil.cli.extras import require
from vigil.cli.progress import progress

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate detectors on public labelled benchmarks")


@eval_app.command("nab")
def nab(
    data: Path | None = data_option("NAB folder (default: $VIGIL_DATASETS/nab)"),
    plots: Path = typer.Option(None, "--plots", help="write PNG figures into this folder"),
    subset: str = typer.Option("all", "--subset", help="all, odd or even (the development split is odd)"),
    detector: str = typer.Option("context_likelihood", "--detector", help="detector to run"),
    as_json: bool = JsonOption,
) -> None:
    """Score a detector on the Numenta Anomaly Benchmark, exactly as NAB scores."""
    require("eval nab", "eval")
    from vigil.analytics.eval.nab import PROFILE_KEYS, run_nab
    from vigil.analytics.eval.nab_corpus import CorpusError

    root = data if data is not None else datasets_root() / "nab"
    try:
        with progress(as_json) as shown:
            doc = run_nab(root, detector=detector, subset=subset, plots=plots, progress=shown)
    except (CorpusError, ValueError) as exc:
        err_console.print(f"[red]vigil eval nab:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from exc
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    keys = list(PROFILE_KEYS.values())
    table = Table(title=f"NAB ({doc['files']} files, {doc['subset']}): normalised scores, 100 = perfect, 0 = null")
    table.add_column("detector")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_row(f"[bold]{doc['detector']['name']} (ours)[/bold]", *(f"{doc[k]:.1f}" for k in keys))
    board = sorted(doc["scoreboard"].items(), key=lambda kv: -kv[1].get("standard", 0.0))
    for name, scores in board:
        table.add_row(name, *(f"{scores.get(k, float('nan')):.1f}" for k in keys))
    console = Console()
    console.print(table)
    console.print(f"thresholds: {doc['thresholds']} ({doc['seconds']} s)")
    if "plots" in doc:
        console.print("plots: " + ", ".join(doc["plots"]))


register_disk(eval_app)
register_smd(eval_app)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
