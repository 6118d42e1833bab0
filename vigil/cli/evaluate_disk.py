"""``vigil eval disk``: the disk-failure rules on public SMART data (``vigil.analytics.eval.disk``)."""

from __future__ import annotations

from pathlib import Path

import typer

from vigil.analytics.eval import datasets_root
from vigil.cli.common import EXIT_USAGE, JsonOption, data_option, err_console, show
from vigil.cli.extras import require
from vigil.cli.progress import progress


def register_disk(eval_app: typer.Typer) -> None:
    @eval_app.command("disk")
    def disk(
        data: Path | None = data_option(
            "SMART data: Backblaze daily CSVs (folder, file or zip) or Alibaba's failure tickets "
            "(default: $VIGIL_DATASETS/alibaba_ssd_failures)"
        ),
        as_json: bool = JsonOption,
        horizon: int = typer.Option(30, help="days before failure a flag counts"),
        lead: int = typer.Option(1, help="a flag must come at least this many days before the failure"),
        fpr: float = typer.Option(0.01, help="target drive-level false-positive rate"),
        plots: Path | None = typer.Option(None, "--plots", help="folder for PNG plots"),
        seed: int = typer.Option(0, help="seed of the train/test split of drives"),
    ) -> None:
        """Disk-failure rules vs SMART 5/197/198: recall at a fixed FPR (Backblaze CSVs), share flagged (Alibaba).

        On Backblaze daily CSVs: failing-drive recall at a fixed drive-level false-positive rate and
        lead time, the trained model and the rule prior beside "SMART 5/197/198 raw > 0". On Alibaba's
        SSD failure tickets (the default data: failed drives only, one snapshot at failure): the share
        of failed drives each rule flags at failure; no false-positive rate or lead time exists there.
        """
        require("eval disk", "eval")
        from vigil.analytics.eval.disk import evaluate

        if data is None:
            data = datasets_root() / "alibaba_ssd_failures"
        if not data.exists():
            err_console.print(f"[red]vigil eval disk[/red]: no SMART data at {data} (--data, or VIGIL_DATASETS)")
            raise typer.Exit(EXIT_USAGE)
        with progress(as_json) as shown:
            shown.phase(f"disk-failure evaluation on {data.name}")
            result = evaluate(data, horizon=horizon, lead=lead, target_fpr=fpr, seed=seed, plots=plots)
        show(result, as_json)
