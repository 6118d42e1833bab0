"""``vigil bench sink`` runs end to end on a few seconds (broker, simulator, the sink process, a real
VictoriaMetrics) and prints the documented figures; the figures themselves come from full-size runs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vigil.cli.app import build_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_sink_writes_everything_produced_and_measures_the_lag() -> None:
    result = CliRunner().invoke(build_app(), ["bench", "sink", "--json", "--seconds", "3", "--lag-seconds", "14"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["machine"] and doc["store"].startswith("VictoriaMetrics")
    phase = doc["throughput"]
    assert phase["drained"] and phase["samples_produced"] > 0
    assert phase["samples_written"] == phase["samples_produced"] == phase["vm_rows_inserted"]  # the store agrees
    assert doc["samples_per_s"] > 0 and phase["end_to_end_samples_per_s"] > 0
    lag = doc["lag"]
    assert lag["samples"] > 0 and 0 < lag["lag_p50_s"] <= lag["lag_p99_s"] < 30
