"""`vigil bench pipeline --json`, short: its throughput phase on the real embedded broker with one
analytics process, printed as one JSON document (the latency phase needs three minutes: left out)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vigil.cli.app import build_app


@pytest.mark.integration
@pytest.mark.slow
def test_a_short_throughput_phase_prints_its_figures_as_json() -> None:
    args = ["bench", "pipeline", "--json", "--seconds", "5", "--latency-seconds", "0"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    figures = doc["throughput"]
    assert figures["samples_produced"] > 0 and figures["samples_scored"] > 0
    assert doc["samples_per_s"] == figures["samples_per_s"] and "cores" in doc["machine"]
