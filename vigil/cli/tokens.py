"""``vigil tokens create|list|revoke``: the alerting API's tokens, straight against its store (the SQLite
file under the data dir, or ``alerting.store.url``), so the first admin token can be made before the
service runs and a lost one revoked while it is down. A running service sees a new token at once and
a revoked one within seconds (``TokenBook``)."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.console import Console
from rich.table import Table

from vigil.cli.common import ConfigOption, JsonOption, err_console, load_or_exit, show
from vigil.cli.extras import require

if TYPE_CHECKING:  # the store pulls in SQLAlchemy: only when a command runs
    from vigil.alerting.store import AlertStore
    from vigil.alerting.tokens import Role

tokens_app = typer.Typer(
    no_args_is_help=True, help="API tokens of the alerting service (roles: intake, viewer, operator, admin)"
)


def _store(config: list[Path] | None) -> AlertStore:
    require("tokens", "server")
    from vigil.alerting.service import open_database
    from vigil.alerting.store import AlertStore

    cfg = load_or_exit(config)
    return AlertStore(open_database(cfg.alerting, cfg.alerting.resolve_db_path(cfg.data_dir)))


def _actor() -> str:
    try:
        return f"vigil tokens ({getpass.getuser()})"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "vigil tokens"


@tokens_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="who uses it: every write is recorded under this name"),
    role: str = typer.Option("viewer", "--role", help="intake, viewer, operator or admin"),
    config: list[Path] | None = ConfigOption,
) -> None:
    """Make a token and print it (on stdout, alone, once: only its SHA-256 is kept)."""
    store = _store(config)
    try:
        token, row = store.create_token(name, cast("Role", role), _actor(), time.time())  # checked there
    except ValueError as exc:
        err_console.print(f"[red]refused[/red]: {exc}")
        raise typer.Exit(2) from exc
    finally:
        store.close()
    err_console.print(f"token {row.prefix} for {row.name} ({row.role}); it is shown this once:")
    print(token)  # noqa: T201 - the command's product, alone on stdout for scripts


@tokens_app.command("list")
def list_tokens(
    json_out: bool = JsonOption,
    config: list[Path] | None = ConfigOption,
) -> None:
    """Every token (revoked ones too) by prefix; never a token or its hash."""
    store = _store(config)
    try:
        rows = [t.to_json() for t in store.tokens()]
    finally:
        store.close()
    if json_out:
        show({"tokens": rows}, True)
        return
    table = Table("prefix", "name", "role", "created by", "revoked by")
    for row in rows:
        table.add_row(
            str(row["prefix"]), str(row["name"]), str(row["role"]), str(row["created_by"]), str(row["revoked_by"] or "")
        )
    Console().print(table)


@tokens_app.command("revoke")
def revoke(
    prefix: str = typer.Argument(..., help="the token's prefix (vgl_xxxxxxxx), as `vigil tokens list` shows it"),
    config: list[Path] | None = ConfigOption,
) -> None:
    """Revoke a token by its prefix; a running service refuses it within seconds."""
    store = _store(config)
    try:
        done = store.revoke_token(prefix, _actor(), time.time())
    finally:
        store.close()
    if not done:
        err_console.print(f"[red]no active token {prefix}[/red]")
        raise typer.Exit(1)
    err_console.print(f"revoked {prefix}")


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
