"""``vigil status``: each service of a running ``vigil up`` (or of the URLs given), from its
``/healthz`` and ``/metrics``: health and why not, consumer lag, restarts, last poll.

Exit status: 0 when every service answers healthy, 1 when one does not (or does not answer), 2
when there is nothing to ask (no ``vigil up`` running on the config's ``data_dir`` and no ``--url``).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from vigil.cli.common import ConfigOption, JsonOption, err_console, load_or_exit, print_json

EXIT_UNHEALTHY, EXIT_NOTHING = 1, 2
TIMEOUT_S = 3.0


@dataclass
class ServiceStatus:
    name: str
    url: str | None
    reachable: bool = False
    ok: bool = False
    status: int | None = None  # the /healthz HTTP status
    problems: list[str] = field(default_factory=list)
    lag: int | None = None  # records, summed over the partitions it holds
    partitions: int | None = None
    restarts: int | None = None  # known for services vigil up supervises
    state: str | None = None  # vigil up's view: up, restarting, gave up
    last_poll_age_s: float | None = None
    bus_ok: bool | None = None
    dead_letters: int | None = None


def status(
    config: list[Path] | None = ConfigOption,
    url: list[str] | None = typer.Option(None, "--url", help="a service's base URL (repeat; default: the vigil up)"),
    as_json: bool = JsonOption,
) -> None:
    """Show each service's health, consumer lag, restarts and last poll (exit 1 if one is unhealthy)."""
    found = _targets(config, url or [])
    services = [probe(target) for target in found]
    if as_json:
        print_json({"services": [asdict(s) for s in services]})
    else:
        Console().print(_table(services))
    if not all(s.ok for s in services):
        raise typer.Exit(EXIT_UNHEALTHY)


def _targets(config: list[Path] | None, urls: list[str]) -> list[ServiceStatus]:
    if urls:
        return [ServiceStatus(name=u, url=u.rstrip("/")) for u in urls]
    cfg = load_or_exit(config)
    path = cfg.data_dir / "run" / "services.json"
    run = _read_run(path)
    if run is None:
        err_console.print(f"no running `vigil up` found ({path}): start one, or pass --url for each service")
        raise typer.Exit(EXIT_NOTHING)
    return [
        ServiceStatus(name=name, url=unit.get("url"), restarts=unit.get("restarts"), state=unit.get("state"))
        for name, unit in sorted(run["services"].items())
    ]


def _read_run(path: Path) -> dict[str, Any] | None:
    """The run file of a ``vigil up`` still alive (a file left by a killed one is ignored)."""
    try:
        run = json.loads(path.read_text())
        os.kill(int(run["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return run if isinstance(run.get("services"), dict) else None


def _get(url: str) -> tuple[int, bytes]:
    """One GET with the status and body; a 503 from /healthz is an answer, not an error. The
    standard library is enough for two requests, and keeps `vigil status` in the base install."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def probe(target: ServiceStatus) -> ServiceStatus:
    """Fill ``target`` from its /healthz (200 or 503, JSON) and /metrics; a unit without a URL (the
    embedded broker) is judged by vigil up's supervision state alone."""
    if target.url is None:
        target.ok = target.reachable = target.state == "up"
        return target
    try:
        code, body = _get(target.url + "/healthz")
        health = json.loads(body)
        metrics = _get(target.url + "/metrics")[1].decode()
    except (OSError, ValueError) as exc:  # refused, timed out, reset (URLError is an OSError), not JSON
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        target.problems = [f"not answering: {reason}"]
        return target
    target.reachable, target.status = True, code
    target.ok = code == 200 and bool(health.get("ok")) and target.state in (None, "up")
    if target.name.startswith("http"):
        target.name = str(health.get("service") or target.name)
    target.problems = _problems(health, target.state)
    target.last_poll_age_s = health.get("last_poll_age_s")
    target.bus_ok = health.get("bus_ok")
    _read_metrics(target, metrics)
    return target


def _problems(health: dict[str, Any], state: str | None) -> list[str]:
    """Why a service is not ok, from its /healthz flags and vigil up's supervision state."""
    out = []
    if health.get("poll_stalled"):
        out.append("polling stalled")
    if health.get("lag_growing"):
        out.append("lag keeps growing")
    if health.get("dispatcher_alive") is False:
        out.append("an outbox worker died")
    if health.get("bus_ok") is False:
        out.append("broker away")  # reported, but not a failure: restarting would not help
    if state not in (None, "up"):
        out.append(str(state))
    return out


def _read_metrics(target: ServiceStatus, text: str) -> None:
    lags: list[float] = []
    letters = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "vigil_consumer_lag_records":
            lags += [s.value for s in family.samples]
        elif family.name == "vigil_dead_letter_records":  # the parser drops a counter's _total
            letters += sum(s.value for s in family.samples if s.name.endswith("_total"))
            target.dead_letters = int(letters)
    if lags:
        target.lag, target.partitions = int(sum(lags)), len(lags)


def _table(services: list[ServiceStatus]) -> Table:
    table = Table(title="Vigil services")
    for col in ("service", "health", "lag", "restarts", "last poll", "url"):
        table.add_column(col)
    for s in services:
        health = "[green]ok[/green]" if s.ok else "[red]" + (", ".join(s.problems) or "unhealthy") + "[/red]"
        lag = "" if s.lag is None else f"{s.lag:,} ({s.partitions} partitions)"
        poll = "" if s.last_poll_age_s is None else f"{s.last_poll_age_s:.1f}s ago"
        restarts = "" if s.restarts is None else str(s.restarts)
        table.add_row(s.name, health, lag, restarts, poll, s.url or "")
    return table


def register(app: typer.Typer) -> None:
    app.command()(status)
