"""``vigil runbooks check DIR``, ``vigil remediation plan --incident ID``, ``vigil audit verify``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from vigil.cli.common import ConfigOption, load_or_exit
from vigil.cli.extras import require
from vigil.clock import SystemClock
from vigil.errors import ConfigError

if TYPE_CHECKING:  # the alerting store and runbooks need the server extra: imported when a command runs
    from vigil.alerting.runbooks.model import Subject
    from vigil.alerting.store import AlertStore

runbooks_app = typer.Typer(no_args_is_help=True, help="Remediation runbooks")
remediation_app = typer.Typer(no_args_is_help=True, help="Remediation plans and runs")
audit_app = typer.Typer(no_args_is_help=True, help="The remediation audit log")


@runbooks_app.command("check")
def check(folder: Path = typer.Argument(..., help="a folder of runbook YAML files")) -> None:
    """Validate runbooks (schema, actions, templates, approval guards); errors name file, line and key."""
    require("runbooks check", "server")
    from vigil.alerting.runbooks.actions.build import catalog_actions
    from vigil.alerting.runbooks.loader import load_dir

    try:
        found = load_dir(folder, catalog_actions(), packaged=False)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    Console().print(f"[green]ok[/green] {len(found)} runbooks: {', '.join(sorted(found))}")


@remediation_app.command("plan")
def plan(
    incident: str = typer.Option(..., "--incident", help="incident id, incident key or alert fingerprint"),
    config: list[Path] | None = ConfigOption,
) -> None:
    """The dry-run plan for an incident as JSON (nothing is stored or done)."""
    require("remediation plan", "server")
    from vigil.alerting.runbooks.engine import Remediation
    from vigil.alerting.runbooks.wiring import load_parts
    from vigil.alerting.store import AlertStore

    cfg = load_or_exit(config)
    store = AlertStore(cfg.alerting.resolve_db_path(cfg.data_dir))
    try:
        parts = load_parts(cfg.alerting.remediation, SystemClock())
        subject = _subject(store, incident)
        if subject is None:
            Console(stderr=True).print(f"no incident or alert {incident!r} in {store.path}")
            raise typer.Exit(1)
        made = Remediation(parts, store).propose(subject)
        out = made.to_json() if made is not None else {"incident": subject.key, "plan": None, "why": "no runbook"}
        print(json.dumps(out, indent=2))  # noqa: T201
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()


def _subject(store: AlertStore, incident: str) -> Subject | None:
    """An incident by id or key with its members' labels; or, before incidents, one alert by fingerprint."""
    from vigil.alerting.runbooks.model import Subject

    found = store.incident(int(incident)) if incident.isdigit() else store.incident_by_key(incident)
    if found is not None:
        labels: dict[str, str] = {}
        for member in store.members(found.id):
            alert = store.get(member.fingerprint)
            if alert is not None:
                for k, v in alert.labels.items():
                    labels.setdefault(str(k), str(v))
        labels.update(incident=str(found.id), incident_key=found.key)
        return Subject(found.key, labels, found.id, found.severity, found.title)
    alert = store.get(incident)
    if alert is None:
        return None
    labels = {str(k): str(v) for k, v in alert.labels.items()}
    labels.update(incident=incident[:12], incident_key=incident)
    return Subject(incident, labels, None, alert.severity, alert.annotations.get("summary", ""))


@audit_app.command("verify")
def verify(config: list[Path] | None = ConfigOption) -> None:
    """Walk the audit log's hash chain; exit 1 naming the first bad record."""
    require("audit verify", "server")
    from vigil.alerting.runbooks.audit import verify_chain
    from vigil.alerting.store import AlertStore

    cfg = load_or_exit(config)
    store = AlertStore(cfg.alerting.resolve_db_path(cfg.data_dir))
    try:
        result = verify_chain(store.audit_rows(), store.audit_head())
    finally:
        store.close()
    if result.ok:
        Console().print(f"[green]ok[/green] {result.records} records, head {result.head[:16]}")
        return
    Console(stderr=True).print(
        f"audit log broken at record {result.bad_seq}: {result.reason} ({result.records} records before it are good)"
    )
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(runbooks_app, name="runbooks")
    app.add_typer(remediation_app, name="remediation")
    app.add_typer(audit_app, name="audit")
