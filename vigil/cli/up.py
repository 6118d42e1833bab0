"""``vigil up``: the whole platform on one machine, supervised, with a live view or a JSON report.

Exit status: 0 when the run ended as asked (duration over, Ctrl-C or SIGTERM); 1 when it failed
(the broker could not start, or a service or the broker kept dying and supervision gave up:
everything is stopped first); 2 for a usage or config error.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from vigil.cli.common import ConfigOption, err_console, interrupt_on_signals, load_or_exit, stop_on_signals
from vigil.cli.extras import require
from vigil.cli.progress import progress
from vigil.cli.report import Notification
from vigil.cli.supervisor import SupervisorEvent
from vigil.clock import to_iso

if TYPE_CHECKING:  # the stack needs the server and embedded extras: imported when `up` runs
    from vigil.cli.report import Notification
    from vigil.cli.stack import Stack

EXIT_FAILED = 1


def up(
    config: list[Path] | None = ConfigOption,
    duration: float = typer.Option(0.0, help="seconds to run, then stop (0: until Ctrl-C)"),
    report: Path | None = typer.Option(None, help="write the run's JSON report here (no live view)"),
    ephemeral: bool = typer.Option(False, help="embedded broker keeps everything in memory"),
    remediate: bool = typer.Option(
        False, help="remediation acts on the simulated fleet (execute mode); without it, plans only (dry run)"
    ),
) -> None:
    """Run broker, simulator, analytics and alerting, restarting what dies, with a live view of the fleet.

    Remediation plans every XID incident; with --remediate it also drains, requeues, resets or
    reboots, verifies and returns nodes to service on the simulated fleet. The report gives each
    fault's recovery and the run's ETTR (effective training time ratio), so a seed can be compared
    with and without --remediate.

    Exit status: 0 ok, 1 failure (supervision gave up on a crash loop, or the broker did not
    start), 2 usage or config error.
    """
    require("up", "server", "embedded")
    from vigil.cli.stack import Stack

    cfg = load_or_exit(config)
    stop = stop_on_signals()  # from the moment the start is done (interrupt_on_signals restores it)
    stack = _start(Stack(cfg, ephemeral=ephemeral, remediate=remediate))
    err_console.print(f"vigil up: broker {stack.effective.kafka.bootstrap_servers[0]}, logs in {cfg.data_dir / 'logs'}")
    if stack.ui_token is not None:
        ui = f"http://127.0.0.1:{stack.health_ports['alerting']}/"
        err_console.print(f"vigil up: web UI and API on {ui}, admin token {stack.ui_token}", highlight=False)
    deadline = time.monotonic() + duration if duration else float("inf")
    try:
        if report is None:
            _live(stack, stop, deadline)
        else:
            _reporting(stack, stop, deadline, duration)
    finally:
        stack.stop()
    result = stack.report()
    if report is not None:
        report.write_text(json.dumps(result, indent=2))
        err_console.print(f"report written to {report}")
    else:
        Console().print(_summary(result))
    if stack.supervisor.gave_up is not None:
        err_console.print(f"[red]vigil up: gave up on {stack.supervisor.gave_up}[/red]; everything was stopped")
        raise typer.Exit(EXIT_FAILED)


def _reporting(stack: Stack, stop: threading.Event, deadline: float, duration: float) -> None:
    """The run without the live view: supervision events on stderr, and on a terminal a progress line
    (time left, faults paged so far, restarts)."""
    with progress(as_json=False) as shown:
        shown.phase("vigil up: the fleet runs, faults are injected and paged", duration or None)
        last = time.monotonic()
        while not stop.is_set() and time.monotonic() < deadline and _supervise(stack, _say):
            stop.wait(0.5)
            now = time.monotonic()
            shown.advance(now - last, _figures(stack))
            last = now


def _figures(stack: Stack) -> str:
    result = stack.report()
    paged = sum(1 for row in result["faults"] if row["detected"])
    restarts = sum(stack.supervisor.restarts.values())
    return f"{stack.view.samples:,} samples, {paged}/{len(result['faults'])} faults paged, {restarts} restarts"


def _start(stack: Stack) -> Stack:
    """Start everything or nothing: a failure or a signal while starting stops what was started
    (``Stack.start`` cleans up) and exits non-zero, instead of finishing the start first."""
    try:
        with interrupt_on_signals():
            return stack.start()
    except KeyboardInterrupt:
        err_console.print("vigil up: interrupted while starting; everything it started is stopped")
        raise typer.Exit(130) from None
    except Exception as exc:  # any start-up failure: reported, and nothing left running
        # One line however narrow the terminal, and the message's own brackets are not markup.
        err_console.print(
            f"[red]vigil up could not start[/red]: {type(exc).__name__}: {escape(str(exc))}", soft_wrap=True
        )
        raise typer.Exit(EXIT_FAILED) from exc


def _supervise(stack: Stack, say: Callable[[str], object]) -> bool:
    """One supervision pass; False once supervision has given up (the run must end)."""
    for event in stack.supervise():
        say(_event_line(event))
    return stack.supervisor.gave_up is None


def _say(line: str) -> None:
    err_console.print(line, soft_wrap=True)


def _event_line(event: SupervisorEvent) -> str:
    colour = {"restarted": "green", "gave_up": "red"}.get(event.kind, "yellow")
    return f"[{colour}]{to_iso(time.time())[11:19]} {event}[/{colour}]"


def _live(stack: Stack, stop: threading.Event, deadline: float) -> None:
    recent: deque[str] = deque(maxlen=4)
    with Live(_render(stack, recent), refresh_per_second=2, screen=False) as live:
        while not stop.is_set() and time.monotonic() < deadline and _supervise(stack, recent.append):
            live.update(_render(stack, recent))
            stop.wait(0.5)


def _render(stack: Stack, recent: deque[str]) -> Group:
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
    faults = Table(title=f"Injected faults (ground truth); ETTR {_ratio(result['ettr'])}")
    for col in ("t+", "kind", "entity", "paged", "latency", "recovered"):
        faults.add_column(col)
    for row in result["faults"]:
        entity = ",".join(f"{k}={v}" for k, v in row["entity"].items())
        faults.add_row(
            f"{row['injected_at'] - stack.started_at:.0f}s",
            row["kind"],
            entity,
            "[green]yes[/green] " + ",".join(row["alerts"]) if row["detected"] else "[yellow]not yet[/yellow]",
            f"{row['latency_s']:.1f}s" if row["latency_s"] is not None else "",
            _recovered(row),
        )
    alerts = _incidents(stack, result)
    return Group(
        fleet, faults, alerts, _remediation(result["remediation"]), _canary(result["canary"]), _services(stack, recent)
    )


def _ratio(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def _recovered(row: dict[str, object]) -> str:
    took = row["time_to_recover_s"]
    if took is None:
        return "[yellow]not yet[/yellow]" if row["drained_at"] or row["ended_at"] is None else ""
    how = "remediated" if row["remediated"] else "by hand"
    return f"{how}, {took:.0f}s" + (f" ({row['run_state']})" if row["run_state"] else "")


STATE_COLOUR = {"succeeded": "green", "waiting_approval": "red", "escalated": "red", "planned": "cyan"}


def _remediation(section: dict[str, Any]) -> Table:
    """One row per run: what it is about, where it stands, each step's state (and what it waits for)."""
    mode = "execute" if section["mode"] == "execute" else "dry run: plans only (--remediate to act)"
    table = Table(title=f"Remediation ({mode})")
    for col in ("runbook", "node", "state", "steps"):
        table.add_column(col)
    for run in section["runs"][-8:]:
        colour = STATE_COLOUR.get(run["state"], "yellow")
        steps = " ".join(f"{s['name']}:{_MARK.get(s['state'], s['state'])}" for s in run["steps"])
        waiting = [s["detail"] for s in run["steps"] if s["state"] == "pending" and s["detail"]]
        state = run["state"] + (f": {waiting[0][:60]}" if run["state"] == "waiting_approval" and waiting else "")
        node = f"{run['host']} GPU {run['gpu_index']}" if run["gpu_index"] else str(run["host"])
        table.add_row(run["runbook"], node, f"[{colour}]{state}[/{colour}]", steps)
    return table


_MARK = {"succeeded": "ok", "skipped": "-", "pending": "..", "running": "run"}


def _canary(rows: list[dict[str, object]]) -> Table:
    """The canary's view of the serving model: each node's last round and judgement, and whether it serves."""
    table = Table(title="Canary (golden questions to the serving model)")
    for col in ("target", "version", "last round", "verdict", "serving"):
        table.add_column(col)
    for row in rows:
        colour = {"pass": "green", "fail": "red"}.get(str(row["verdict"]), "yellow")
        serving = "yes" if row["serving"] is True else "[red]out[/red]" if row["serving"] is False else ""
        table.add_row(
            str(row["target"]),
            str(row["version"]),
            f"{row['passed']}/{row['total']}",
            f"[{colour}]{row['verdict']}[/{colour}]",
            serving,
        )
    return table


def _incidents(stack: Stack, result: dict[str, Any]) -> Table:
    """The incidents the pager heard about, most GPU-hours at risk first."""
    title = (
        f"Incidents ({result['incidents']}, {result['notifications']} notifications, "
        f"{result['false_alerts']} unattributed pages, {result['drained_node_alerts']} about drained nodes)"
    )
    table = Table(title=title)
    for col in ("paged", "incident", "priority (GPU-h)", "state", "domain", "summary"):
        table.add_column(col)
    latest: dict[str, Notification] = {}
    first: dict[str, float] = {}
    for note in stack.receiver.snapshot():
        latest[note.fingerprint] = note
        first.setdefault(note.fingerprint, note.received_at)
    ranked = sorted(latest.values(), key=lambda n: (-(n.priority or 0.0), -first[n.fingerprint]))
    for note in ranked[:10]:
        priority = f"{note.priority:g}" if note.priority is not None else ""
        state = "[green]resolved[/green]" if note.status == "resolved" else f"[red]{note.status}[/red]"
        table.add_row(
            to_iso(first[note.fingerprint])[11:19], note.fingerprint, priority, state, note.domain, note.summary[:80]
        )
    return table


def _services(stack: Stack, recent: deque[str]) -> Table:
    table = Table(title="Services (supervised)", caption="\n".join(recent) or None)
    for col in ("service", "state", "restarts"):
        table.add_column(col)
    for name, status in stack.supervisor.status().items():
        state = status.state if status.retry_in_s is None else f"restarting in {status.retry_in_s:.0f}s"
        colour = "green" if status.state == "up" else "red" if status.state == "gave up" else "yellow"
        table.add_row(name, f"[{colour}]{state}[/{colour}]", str(status.restarts))
    return table


def _summary(result: dict[str, Any]) -> Table:
    caption = f"restarts: {result['restarts']}; ETTR {_ratio(result['ettr'])} ({result['remediation']['mode']})"
    table = Table(title="Run summary", caption=caption)
    for col in ("kind", "entity", "detected", "latency_s", "remediated", "time_to_recover_s"):
        table.add_column(col)
    for row in result["faults"]:
        table.add_row(
            row["kind"],
            str(row["entity"]),
            str(row["detected"]),
            str(row["latency_s"]),
            str(row["remediated"]),
            str(row["time_to_recover_s"]),
        )
    return table


def register(app: typer.Typer) -> None:
    app.command()(up)
