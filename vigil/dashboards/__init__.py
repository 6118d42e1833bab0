"""Grafana dashboards as code: the definitions (``boards``, ``health``) and the JSON they make (``build``).

``build()`` returns each dashboard's JSON by file name; ``vigil dashboards build`` writes them into
``dashboards/`` (committed, and a test fails when they differ from what ``build()`` makes). Every metric a
query reads must be a family of ``vigil.metrics_catalog``: a panel that reads another fails the build,
unless it ``awaits`` the issue whose service will export it, in which case it is left out and named
in a note at the top of its dashboard until the catalog has the metric.
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.dashboards import boards, health
from vigil.dashboards.grafana import Board, Json, Panel, dashboard_json, family_of, query_metrics
from vigil.errors import ConfigError
from vigil.metrics_catalog import families

__all__ = ["BOARDS", "Board", "build", "unknown_metrics"]

BOARDS = (
    ("fleet.json", boards.fleet),
    ("node.json", boards.node),
    ("training.json", boards.training),
    ("incidents.json", boards.incidents),
    ("canary.json", boards.canary),
    ("health.json", health.health),
)


def unknown_metrics(names: set[str]) -> set[str]:
    """The names (series as written in a query) that are no family of the catalog."""
    known = families()
    histograms = [n for n, f in known.items() if f.kind == "histogram"]
    return {n for n in names if family_of(n, histograms) not in known}


def _split(board: Board) -> tuple[list[Panel], list[Panel]]:
    """The panels the catalog can feed now, and those that await another issue's metrics."""
    shown: list[Panel] = []
    waiting: list[Panel] = []
    for panel in board.panels:
        unknown = unknown_metrics(panel.metrics())
        if not unknown:
            shown.append(panel)
        elif panel.awaits:
            waiting.append(panel)
        else:
            raise ConfigError(
                f"dashboard {board.uid!r}, panel {panel.title!r}: {', '.join(sorted(unknown))} "
                "not in vigil.metrics_catalog"
            )
    return shown, waiting


def build() -> Mapping[str, Json]:
    """Every dashboard's JSON by file name; raises ``ConfigError`` naming a panel that reads a metric
    the catalog does not have (and does not await)."""
    out: dict[str, Json] = {}
    for name, make in BOARDS:
        board = make()
        for var in board.variables:
            unknown = unknown_metrics(query_metrics(var.query))
            if unknown:
                raise ConfigError(f"dashboard {board.uid!r}, variable {var.name}: {', '.join(sorted(unknown))} unknown")
        shown, waiting = _split(board)
        out[name] = dashboard_json(board, shown, waiting)
    return out


def waiting_panels() -> dict[str, list[str]]:
    """Per dashboard file, the titles of the panels left out until their metrics exist."""
    return {name: [p.title for p in _split(make())[1]] for name, make in BOARDS}
