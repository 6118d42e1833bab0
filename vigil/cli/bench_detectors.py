"""``vigil bench detectors``: samples/s per core and state bytes per series of the detector library.

Registers itself on ``vigil.cli.bench.bench_app`` when imported (``app.py`` imports it). The
workload and the method are described in ``vigil.analytics.models.bench``.
"""

from __future__ import annotations

import typer

from vigil.cli.bench import bench_app, machine
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require
from vigil.cli.progress import progress


@bench_app.command("detectors")
def detectors(
    json_out: bool = JsonOption,
    series: int = typer.Option(10_000, min=1, help="independent series"),
    ticks: int = typer.Option(1_000, min=1, help="ticks per series"),
    chunk: int = typer.Option(10, min=1, help="ticks per message, as the service receives them"),
    repeats: int = typer.Option(3, min=1, help="cold runs per model; the median is reported"),
) -> None:
    """Each registered model's samples/s on one core (decision layer included) and its state per series."""
    require("bench detectors", "server")
    from vigil.analytics.models.bench import detector_figures

    with progress(json_out) as shown:
        result = {"machine": machine(), **detector_figures(series, ticks, chunk, repeats, progress=shown)}
    show(result, json_out)
