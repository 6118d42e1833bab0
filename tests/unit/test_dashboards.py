"""The dashboards as code: the committed JSON is what the definitions build, every metric a query or a
variable reads is a family of ``vigil.metrics_catalog``, every dashboard passes the JSON Schema of
Grafana's dashboard (generated from Grafana's published types, ``tests/fixtures/grafana``), and the
provisioning files point at them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

import vigil.dashboards as dashboards
from vigil.cli.app import build_app
from vigil.cli.dashboards import dashboard_text
from vigil.dashboards import build, waiting_panels
from vigil.dashboards.grafana import Board, Panel, Target, family_of, query_metrics
from vigil.errors import ConfigError
from vigil.metrics_catalog import families

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "dashboards"
SCHEMA = ROOT / "tests" / "fixtures" / "grafana" / "dashboard.schema.json"


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(FOLDER.glob("*.json"))}


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs + [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_the_committed_json_is_what_the_definitions_build() -> None:
    built = {name: dashboard_text(dict(body)) for name, body in build().items()}
    on_disk = {p.name: p.read_text() for p in FOLDER.glob("*.json")}
    stale = sorted(n for n in built.keys() | on_disk.keys() if built.get(n) != on_disk.get(n))
    assert not stale, f"dashboards/{stale} differ from vigil/dashboards: run `make dashboards` and commit"


def test_the_six_dashboards_are_there() -> None:
    titles = {d["uid"]: d["title"] for d in committed().values()}
    assert set(titles) == {
        "vigil-fleet",
        "vigil-node",
        "vigil-training",
        "vigil-incidents",
        "vigil-canary",
        "vigil-health",
    }


def test_every_metric_a_dashboard_reads_is_in_the_catalog() -> None:
    known = families()
    histograms = [n for n, f in known.items() if f.kind == "histogram"]
    for name, dashboard in committed().items():
        for expr in expressions(dashboard):
            names = query_metrics(expr)
            assert names or "time()" in expr or expr.startswith("label_values"), f"{name}: {expr} reads no metric"
            for series in names:
                assert family_of(series, histograms) in known, f"{name}: {series} is not in vigil.metrics_catalog"


def test_a_panel_reading_a_metric_vigil_does_not_export_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    typo = Panel("GPU temperature", (Target("vigil_gpu_temprature_celsius"),))
    monkeypatch.setattr(dashboards, "BOARDS", (("x.json", lambda: Board("x", "X", "", (typo,))),))
    with pytest.raises(ConfigError, match=r"panel 'GPU temperature': vigil_gpu_temprature_celsius not in"):
        build()
    result = CliRunner().invoke(build_app(), ["dashboards", "build", "--check"])
    assert result.exit_code == 2 and "vigil_gpu_temprature_celsius" in result.output


def test_a_variable_reading_an_unknown_metric_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil.dashboards.grafana import Variable

    var = Variable("node", "Node", "label_values(vigil_no_such_metric, host)")
    board = Board("x", "X", "", (), (var,))
    monkeypatch.setattr(dashboards, "BOARDS", (("x.json", lambda: board),))
    with pytest.raises(ConfigError, match="variable node: vigil_no_such_metric"):
        build()


def test_a_panel_awaiting_another_issue_is_named_not_shown_until_the_catalog_has_its_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    later = Panel("Incidents", (Target("sum(vigil_incidents_someday)"),), awaits="issue 9 exports it")
    now = Panel("Alerts", (Target("vigil_alerts_firing"),), awaits="issue 9 exports it")
    board = Board("x", "X", "", (later, now))
    monkeypatch.setattr(dashboards, "BOARDS", (("x.json", lambda: board),))
    out = build()["x.json"]
    assert [p["title"] for p in out["panels"]] == ["", "Alerts"]
    assert "**Incidents** (vigil_incidents_someday): issue 9 exports it" in out["panels"][0]["options"]["content"]
    assert waiting_panels() == {"x.json": ["Incidents"]}


def test_no_panel_waits_for_a_metric_any_more() -> None:
    """Issues 9-11 export every metric the dashboards read: nothing is left out of a dashboard."""
    assert {n: t for n, t in waiting_panels().items() if t} == {}


@pytest.mark.parametrize("name", sorted(p.name for p in FOLDER.glob("*.json")))
def test_each_dashboard_passes_grafanas_dashboard_schema(name: str) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator().iter_errors(committed()[name])]
    assert not errors, errors


def test_the_schema_refuses_what_grafana_would_not_load() -> None:
    fleet = committed()["fleet.json"]
    check = validator()
    assert not check.is_valid({k: v for k, v in fleet.items() if k != "schemaVersion"})
    assert not check.is_valid({**fleet, "panels": [{**fleet["panels"][0], "gridpos": {}}]})  # a typo'd key
    assert not check.is_valid({**fleet, "refresh": 30})


def test_every_query_reads_the_datasource_variable() -> None:
    for name, dashboard in committed().items():
        variables = dashboard["templating"]["list"]
        assert variables[0] == {**variables[0], "name": "datasource", "type": "datasource", "query": "prometheus"}
        refs = [p["datasource"] for p in dashboard["panels"] if p["type"] != "text"]
        refs += [t["datasource"] for p in dashboard["panels"] for t in p.get("targets", [])]
        refs += [v["datasource"] for v in variables[1:]]
        assert all(r == {"type": "prometheus", "uid": "${datasource}"} for r in refs), name
        assert refs or name == "canary.json"  # the canary's panels all await issue 11


def test_panels_do_not_overlap() -> None:
    for name, dashboard in committed().items():
        cells: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, panel["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, (name, panel["title"])
            cells |= mine


def test_node_detail_has_cluster_node_and_gpu_variables_narrowed_in_order() -> None:
    variables = {v["name"]: v["query"]["query"] for v in committed()["node.json"]["templating"]["list"][1:]}
    assert list(variables) == ["cluster", "node", "gpu"]
    assert 'cluster="$cluster"' in variables["node"] and 'host="$node"' in variables["gpu"]


def test_build_check_says_which_files_are_stale(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(build_app(), ["dashboards", "build", "--out", str(tmp_path)]).exit_code == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(p.name for p in FOLDER.glob("*.json"))
    (tmp_path / "fleet.json").write_text("{}")
    result = runner.invoke(build_app(), ["dashboards", "build", "--out", str(tmp_path), "--check", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["stale"] == ["fleet.json"]


def test_the_provisioning_files_point_at_the_dashboards_and_a_prometheus_data_source() -> None:
    provider = yaml.safe_load((FOLDER / "provisioning" / "dashboards" / "vigil.yaml").read_text())
    (entry,) = provider["providers"]
    assert provider["apiVersion"] == 1 and entry["type"] == "file" and entry["folder"] == "Vigil"
    assert entry["options"]["path"].startswith("/")
    sources = yaml.safe_load((FOLDER / "provisioning" / "datasources" / "vigil.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] and source["url"].startswith("http")
