"""``vigil bench canary``: golden items/s against a simulated serving fleet, the judge's decision time,
and the false-fail rate of a healthy version judged against itself.

Registers itself on ``vigil.cli.bench.bench_app`` when imported (``app.py`` imports it). How each
figure is made: ``vigil.alerting.canary.bench``.
"""

from __future__ import annotations

import typer

from vigil.cli.bench import bench_app, machine
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require


@bench_app.command("canary")
def canary(
    json_out: bool = JsonOption,
    seconds: float = typer.Option(10.0, min=0.5, help="throughput phase length"),
    workers: int = typer.Option(4, min=1, help="rounds run in parallel (canary.workers)"),
    items: int = typer.Option(20, min=1, help="golden items per round"),
    latency: float = typer.Option(0.002, min=0.0, help="the simulated server's median service time, seconds"),
    rounds: int = typer.Option(1000, min=10, help="rounds of the healthy version against itself"),
    window: int = typer.Option(5, min=1, help="rounds per judgement (criteria.window)"),
    flaky: float = typer.Option(0.02, min=0.0, max=0.5, help="chance a healthy item fails anyway"),
    seed: int = typer.Option(11, help="seed of the false-fail rounds"),
) -> None:
    """Golden items/s, judge decision time, and the false-fail rate over seeded healthy rounds."""
    require("bench canary", "server")
    from vigil.alerting.canary.bench import false_fails, judge_time, throughput

    result = {
        "machine": machine(),
        "throughput": throughput(seconds, 8, items, workers, latency),
        "judge": judge_time(items, window, 200),
        "false_fails": false_fails(rounds, items, window, flaky, seed),
    }
    show(result, json_out)
