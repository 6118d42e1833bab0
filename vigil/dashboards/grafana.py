"""Grafana's dashboard JSON from a few small values: a panel is a title, a kind, its PromQL targets and a
unit; a dashboard is its panels laid out row by row and its template variables.

Every query reads the data source through the ``$datasource`` variable (type prometheus), so the same
JSON works on Prometheus and VictoriaMetrics. The JSON is what Grafana 11-13 saves (schemaVersion 39)
and passes the JSON Schema generated from Grafana's published types (``tests/fixtures/grafana``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Json = dict[str, Any]
Kind = Literal["timeseries", "stat", "table", "bargauge"]

SCHEMA_VERSION = 39
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
# A Vigil metric in a query: every family Vigil exports starts with ``vigil_``.
_METRIC = re.compile(r"\bvigil_[a-z0-9_]+")
_HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    """One panel. ``awaits`` names the issue whose service will export a metric it reads that the catalog
    does not have yet: such a panel is left out (and listed on the dashboard) until the catalog has it."""

    title: str
    targets: tuple[Target, ...]
    kind: Kind = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    awaits: str = ""
    thresholds: tuple[tuple[float, str], ...] = ()
    no_value: str = ""  # shown when the query has no series (a count of nothing is no series, not 0)

    def metrics(self) -> set[str]:
        return {m for t in self.targets for m in query_metrics(t.expr)}


@dataclass(frozen=True)
class Variable:
    """A query variable over a label of a metric, narrowed by the variables before it."""

    name: str
    label: str
    query: str
    include_all: bool = False


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = field(default=())


def query_metrics(expr: str) -> set[str]:
    """The Vigil metric names a PromQL expression reads, as written (``_bucket`` etc. included)."""
    return set(_METRIC.findall(expr))


def family_of(series: str, histograms: Iterable[str]) -> str:
    """The catalog family a series name belongs to: a histogram's ``_bucket``/``_count``/``_sum``
    series to the histogram, anything else to itself."""
    known = set(histograms)
    for suffix in _HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and base in known:
            return base
    return series


def _layout(panels: Sequence[Panel]) -> Iterator[tuple[Panel, Json]]:
    """Left to right, wrapping to a new row when a panel does not fit the 24-column grid."""
    x = y = row_height = 0
    for panel in panels:
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        yield panel, {"h": panel.height, "w": panel.width, "x": x, "y": y}
        x += panel.width
        row_height = max(row_height, panel.height)


def _target(target: Target, ref: str, table: bool) -> Json:
    out: Json = {"refId": ref, "datasource": DATASOURCE, "expr": target.expr, "range": not target.instant}
    out["instant"] = target.instant
    out["legendFormat"] = target.legend or "__auto"
    if table:  # one row per series, its labels as columns
        out["format"] = "table"
    return out


def _field_config(panel: Panel) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    defaults: Json = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.no_value:
        defaults["noValue"] = panel.no_value
    return {"defaults": defaults, "overrides": []}


_OPTIONS: dict[Kind, Json] = {
    "timeseries": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
    "stat": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "background"},
    "table": {"showHeader": True},
    "bargauge": {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
    },
}


def panel_json(panel: Panel, pid: int, grid: Json) -> Json:
    refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [_target(t, refs[i], panel.kind == "table") for i, t in enumerate(panel.targets)],
        "fieldConfig": _field_config(panel),
        "options": _OPTIONS[panel.kind],
    }


def text_panel(pid: int, content: str, grid: Json) -> Json:
    return {
        "id": pid,
        "type": "text",
        "title": "",
        "gridPos": grid,
        "options": {"mode": "markdown", "content": content},
    }


def _variables(board: Board) -> list[Json]:
    out: list[Json] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        }
    ]
    for var in board.variables:
        out.append(
            {
                "name": var.name,
                "label": var.label,
                "type": "query",
                "datasource": DATASOURCE,
                "query": {"query": var.query, "refId": f"{var.name}-values"},
                "hide": 0,
                "refresh": 2,
                "sort": 7,
                "includeAll": var.include_all,
                "multi": False,
                "regex": "",
                "options": [],
            }
        )
    return out


# A drop-down of every Vigil dashboard, keeping the time range and variables (cluster) across them.
_LINK: Json = {
    "title": "Vigil",
    "type": "dashboards",
    "tags": ["vigil"],
    "asDropdown": True,
    "icon": "external link",
    "includeVars": True,
    "keepTime": True,
    "targetBlank": False,
    "tooltip": "",
}


def dashboard_json(board: Board, panels: Sequence[Panel], waiting: Sequence[Panel]) -> Json:
    """The dashboard of ``panels``; ``waiting`` (panels whose metrics no service exports yet) are named in
    a note at the top instead of shown."""
    laid: list[Json] = []
    offset = 0
    if waiting:
        lines = [f"- **{p.title}** ({', '.join(sorted(p.metrics()))}): {p.awaits}" for p in waiting]
        note = "Panels waiting for metrics this build of Vigil does not export yet:\n\n" + "\n".join(lines)
        laid.append(text_panel(1, note, {"h": 2 + len(waiting), "w": GRID_WIDTH, "x": 0, "y": 0}))
        offset = 2 + len(waiting)
    for pid, (panel, grid) in enumerate(_layout(panels), start=len(laid) + 1):
        laid.append(panel_json(panel, pid, {**grid, "y": grid["y"] + offset}))
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": ["vigil", *board.tags],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [_LINK],
        "templating": {"list": _variables(board)},
        "panels": laid,
    }
