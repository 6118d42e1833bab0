"""Grafana dashboards as ConfigMaps for Grafana's sidecar: one per ``dashboards/*.json`` of the repository
(linked into the chart), none while that folder is empty or absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.helm.chart import CHART, ROOT, render


def chart_copy(tmp_path: Path, dashboards: dict[str, Any] | None) -> Path:
    """The chart with the dashboards folder it would ship: these files, or no folder at all (None)."""
    chart = tmp_path / "vigil"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("dashboards"))
    if dashboards is not None:
        (chart / "dashboards").mkdir()
        for name, body in dashboards.items():
            (chart / "dashboards" / name).write_text(json.dumps(body, indent=2))
    return chart


def dashboard_maps(chart: Path, values: str = "monitoring") -> list[dict[str, Any]]:
    """The dashboards' ConfigMaps (the monitoring values turn them on, with a grafana_folder annotation)."""
    maps = render(values, chart=chart).all("ConfigMap")
    return [m for m in maps if m["metadata"]["labels"]["app.kubernetes.io/component"] == "dashboards"]


def test_the_chart_ships_the_repositorys_dashboards_folder() -> None:
    link = CHART / "dashboards"
    assert link.is_symlink() and link.resolve() == (ROOT / "dashboards").resolve()
    shipped = sorted(p.name for p in (ROOT / "dashboards").glob("*.json"))
    names = sorted(next(iter(m["data"])) for m in dashboard_maps(CHART))
    assert names == shipped


def test_each_dashboard_becomes_a_configmap_the_grafana_sidecar_picks_up(tmp_path: Path) -> None:
    fleet = {"title": "Vigil fleet", "uid": "vigil-fleet", "panels": [{"type": "stat", "title": "GPUs"}]}
    node = {"title": "Vigil node", "uid": "vigil-node", "templating": {"list": []}}
    maps = dashboard_maps(chart_copy(tmp_path, {"fleet.json": fleet, "node_detail.json": node, "notes.txt": {}}))
    by_name = {m["metadata"]["name"]: m for m in maps}
    assert set(by_name) == {"r-vigil-dashboard-fleet", "r-vigil-dashboard-node-detail"}
    fleet_map = by_name["r-vigil-dashboard-fleet"]
    assert fleet_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert fleet_map["metadata"]["annotations"] == {"grafana_folder": "Vigil"}
    assert json.loads(fleet_map["data"]["fleet.json"]) == fleet
    assert json.loads(by_name["r-vigil-dashboard-node-detail"]["data"]["node_detail.json"]) == node


def test_an_empty_or_absent_dashboards_folder_renders_none(tmp_path: Path) -> None:
    assert dashboard_maps(chart_copy(tmp_path / "empty", {})) == []
    assert dashboard_maps(chart_copy(tmp_path / "absent", None)) == []


def test_dashboards_are_off_by_default(tmp_path: Path) -> None:
    chart = chart_copy(tmp_path, {"fleet.json": {"title": "x"}})
    assert dashboard_maps(chart, "default") == []
    assert len(dashboard_maps(chart)) == 1


def test_the_chart_ships_vigils_six_dashboards_as_committed() -> None:
    maps = dashboard_maps(CHART)
    shipped = {name: body for m in maps for name, body in m["data"].items()}
    assert len(shipped) == 6
    for name, body in shipped.items():
        assert json.loads(body) == json.loads((ROOT / "dashboards" / name).read_text())
    uids = {json.loads(body)["uid"] for body in shipped.values()}
    assert uids == {"vigil-fleet", "vigil-node", "vigil-training", "vigil-incidents", "vigil-canary", "vigil-health"}
