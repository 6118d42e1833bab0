"""``vigil up``: the whole platform on one machine, with a live view or a JSON report."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from vigil.cli.common import ConfigOption, err_console, load_or_exit, stop_on_signals
from vigil.cli.stack import Stack
from vigil.clock import to_iso


def up(
    config: list[Path] | None = ConfigOption,
    duration: float = typer.Option(0.0, help="seconds to run, then stop (0: until Ctrl-C)"),
    report: Path | None = typer.Option(None, help="write the run's JSON report here (no live view)"),
    ephemeral: bool = typer.Option(False, help="embedded broker keeps everything in memory"),
) -> None:
    """Run broker, simulator, analytics and alerting with a live view of the fleet and its alerts."""
    cfg = load_or_exit(config)
    stop = stop_on_signals()
    stack = Stack(cfg, ephemeral=ephemeral).start()
    err_console.print(f"vigil up: broker {stack.effective.kafka.bootstrap_servers[0]}, logs in {cfg.data_dir / 'logs'}")
    deadline = time.monotonic() + duration if duration else float("inf")
    try:
        if report is None:
            _live(stack, stop, deadline)
        else:
            while not stop.is_set() and time.monotonic() < deadline:
                _check_children(stack)
                stop.wait(1.0)
    finally:
        stack.stop()
    result = stack.report()
    if report is not None:
        report.write_text(json.dumps(result, indent=2))
        err_console.print(f"report written to {report}")
    else:
        Console().print(_summary(result))


def _check_children(stack: Stack) -> None:
    for name in ("alerting", "analytics", "sim"):
        if name in stack.processes.children and not stack.processes.alive(name):
            err_console.print(f"[red]{name} exited[/red]; see {stack.processes.children[name].log_path}")
            stack.processes.children.pop(name)


def _live(stack: Stack, stop: threading.Event, deadline: float) -> None:
    with Live(_render(stack), refresh_per_second=2, screen=False) as live:
        while not stop.is_set() and time.monotonic() < deadline:
            _check_children(stack)
            live.update(_render(stack))
            stop.wait(0.5)


def _render(stack: Stack) -> Group:
    elapsed = time.time() - stack.started_at
    fleet = Table(title=f"Fleet  (t+{elapsed:.0f}s, {stack.view.samples:,} samples)", expand=False)
    for col in ("host", "GPUs", "max temp °C", "mean util"):
        fleet.add_column(col)
    with stack.view.lock:
        for host, hv in sorted(stack.view.hosts.items()):
            stale = time.time() - hv.last_seen > 5
            fleet.add_row(
                host, f"{hv.gpus}" + (" (stale)" if stale else ""), f"{hv.max_temp:.0f}", f"{hv.mean_util:.0%}"
            )
    result = stack.report()
    faults = Table(title="Injected faults (ground truth)")
    for col in ("t+", "kind", "entity", "paged", "latency"):
        faults.add_column(col)
    for row in result["faults"]:
        entity = ",".join(f"{k}={v}" for k, v in row["entity"].items())
        faults.add_row(
            f"{row['injected_at'] - stack.started_at:.0f}s",
            row["kind"],
            entity,
            "[green]yes[/green] " + ",".join(row["alerts"]) if row["detected"] else "[yellow]not yet[/yellow]",
            f"{row['latency_s']:.1f}s" if row["latency_s"] is not None else "",
        )
    alerts = Table(title=f"Pages ({result['notifications']} firing, {result['false_alerts']} unattributed)")
    for col in ("time", "status", "alert", "labels"):
        alerts.add_column(col)
    for note in stack.receiver.snapshot()[-12:]:
        labels = ",".join(f"{k}={v}" for k, v in note.labels.items() if k not in ("alertname", "severity", "cluster"))
        alerts.add_row(to_iso(note.received_at)[11:19], note.status, note.labels.get("alertname", "?"), labels)
    return Group(fleet, faults, alerts)


def _summary(result: dict[str, object]) -> Table:
    table = Table(title="Run summary")
    for col in ("kind", "entity", "detected", "latency_s"):
        table.add_column(col)
    for row in result["faults"]:  # type: ignore[attr-defined]
        table.add_row(row["kind"], str(row["entity"]), str(row["detected"]), str(row["latency_s"]))
    return table


def register(app: typer.Typer) -> None:
    app.command()(up)
