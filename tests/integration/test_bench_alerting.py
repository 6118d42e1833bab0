"""`vigil bench alerting --json` at a small size: one JSON document with the figures issue 9 asks for,
and the storm of one switch's nodes opens one incident that pages (the full-size figures are the
benchmark's to print, not a test's to time)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vigil.cli.app import build_app


def test_bench_alerting_json_reports_throughput_and_one_storm_incident() -> None:
    args = ["bench", "alerting", "--json", "--alerts", "400", "--nodes", "8", "--storm", "600", "--storm-nodes", "30"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout
    assert {"alerts_per_s", "storm", "machine"} <= set(doc)
    assert doc["alerts_per_s"] > 0 and doc["throughput"]["alerts"] == 400
    storm = doc["storm"]
    assert {"alerts", "incidents", "notifications", "first_page_s"} <= set(storm)
    assert storm["alerts"] == 600
    assert storm["incident_domains"] == ["switch:sw-07"], storm  # the switch, not 30 nodes
    assert storm["notifications"] >= 1 and storm["first_page_s"] is not None
