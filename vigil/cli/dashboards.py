"""``vigil dashboards build|push``: Grafana dashboards from their definitions (``vigil.dashboards``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from vigil.cli.common import EXIT_FAILED, EXIT_USAGE, JsonOption, data_option, err_console, show
from vigil.cli.extras import require
from vigil.errors import ConfigError, VigilError

dashboards_app = typer.Typer(no_args_is_help=True, help="Grafana dashboards: build the JSON, push it to Grafana")


def dashboard_text(dashboard: dict[str, Any]) -> str:
    """A dashboard's JSON as committed: two-space indents, a final newline."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def _built() -> dict[str, str]:
    from vigil.dashboards import build

    try:
        return {name: dashboard_text(dict(body)) for name, body in build().items()}
    except ConfigError as exc:
        err_console.print(f"[red]dashboards[/red]: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc


def build(
    out: Path = typer.Option(Path("dashboards"), "--out", help="folder of the dashboard JSON files"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 if a file differs from the definitions"),
    as_json: bool = JsonOption,
) -> None:
    """Write each dashboard's JSON into --out (or with --check, say which files are stale)."""
    from vigil.dashboards import waiting_panels

    texts = _built()
    stale = sorted(n for n, t in texts.items() if not (out / n).is_file() or (out / n).read_text() != t)
    if not check:
        out.mkdir(parents=True, exist_ok=True)
        for name in stale:
            (out / name).write_text(texts[name])
    waiting = {name: titles for name, titles in waiting_panels().items() if titles}
    show(
        {"folder": str(out), "dashboards": sorted(texts), "stale" if check else "written": stale, "waiting": waiting},
        as_json,
    )
    if check and stale:
        raise typer.Exit(EXIT_FAILED)


def _from_folder(folder: Path) -> dict[str, Any]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise VigilError(f"--data: no dashboard JSON in {folder}")
    return {f.name: json.loads(f.read_text()) for f in files}


def push(
    url: str = typer.Option(..., "--url", envvar="GRAFANA_URL", help="Grafana's base URL (or GRAFANA_URL)"),
    token: str = typer.Option(
        ..., "--token", envvar="GRAFANA_TOKEN", help="a service account token (or GRAFANA_TOKEN)", show_default=False
    ),
    folder: str = typer.Option("Vigil", "--folder", help="the folder to put them in (created when missing)"),
    datasource_uid: str | None = typer.Option(
        None, "--datasource-uid", help="the Prometheus or VictoriaMetrics data source they default to"
    ),
    prometheus_url: str | None = typer.Option(
        None,
        "--prometheus-url",
        help="create that data source (default uid vigil-prometheus), or update its URL, to query this "
        "Prometheus or VictoriaMetrics",
    ),
    source: Path | None = data_option(
        "a folder of dashboard JSON files to push (default: the dashboards built into this Vigil)"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create the folder if missing and post every dashboard into it with overwrite (idempotent)."""
    require("dashboards push", "dashboards")
    from vigil.dashboards import build
    from vigil.dashboards.push import Target
    from vigil.dashboards.push import push as push_all

    try:
        boards = _from_folder(source) if source else dict(build())
        done = push_all(Target(url, token, folder, datasource_uid, prometheus_url), boards)
    except VigilError as exc:
        err_console.print(f"[red]dashboards push[/red]: {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    show(done, as_json)


def register(app: typer.Typer) -> None:
    dashboards_app.command("build")(build)
    dashboards_app.command("push")(push)
    app.add_typer(dashboards_app, name="dashboards")
