"""``vigil bench detectors``: samples/s per core and state bytes per series of the detector library.

Registers itself on ``vigil.cli.bench.bench_app`` when imported (``app.py`` imports it). The
workload and the method are described in ``vigil.analytics.eval.detectors``.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console

from vigil.analytics.eval.detectors import detector_figures
from vigil.cli.bench import bench_app, machine


@bench_app.command("detectors")
def detectors(
    json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
    series: int = typer.Option(10_000, min=1, help="independent series"),
    ticks: int = typer.Option(1_000, min=1, help="ticks per series"),
    chunk: int = typer.Option(10, min=1, help="ticks per message, as the service receives them"),
    repeats: int = typer.Option(3, min=1, help="cold runs per model; the median is reported"),
) -> None:
    """Each registered model's samples/s on one core (decision layer included) and its state per series."""
    result = {"machine": machine(), **detector_figures(series, ticks, chunk, repeats)}
    if json_out:
        print(json.dumps(result, indent=2))  # noqa: T201 - the benchmark's output is its product
    else:
        Console().print_json(data=result)
