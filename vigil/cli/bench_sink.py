"""``vigil bench sink``: samples/s the Influx sink writes into a real VictoriaMetrics, and event time to
queryable (how it is measured: ``vigil.cli.sink_bench``). Registers itself on ``vigil.cli.bench.bench_app``
when imported (``app.py`` imports it)."""

from __future__ import annotations

import typer

from vigil.cli.bench import bench_app
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require


@bench_app.command("sink")
def sink(
    json_out: bool = JsonOption,
    seconds: float = typer.Option(60.0, help="throughput phase length (the producer's)"),
    lag_seconds: float = typer.Option(40.0, help="lag phase length (0: skip it)"),
    ticks_per_batch: int = typer.Option(10, help="ticks per telemetry message in the throughput phase"),
) -> None:
    """Samples/s the Influx sink writes into a real VictoriaMetrics, and event-time-to-queryable lag."""
    require("bench sink", "server", "sink", "embedded")
    from vigil.cli.sink_bench import run

    show(run(seconds, lag_seconds, ticks_per_batch), json_out)
