"""``vigil bench api`` runs end to end on a tiny burst against the real API in a child process and
prints the documented figures (the figures themselves come from the full-size run, never a test)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vigil.cli.app import build_app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("client", ["raw", "httpx"])
def test_bench_api_prints_latencies_and_no_errors(client: str) -> None:
    args = ["bench", "api", "--json", "--alerts", "40", "--requests", "25", "--query", "status=resolved&limit=7"]
    result = CliRunner().invoke(build_app(), [*args, "--client", client])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["machine"] and "bursts of 25 concurrent GET /api/v1/alerts?status=resolved&limit=7" in doc["workload"]
    assert doc["errors"] == 0
    assert 0 < doc["p50_ms"] <= doc["p99_ms"] <= doc["max_ms"] and doc["body_bytes"] > 7 * 200
    assert len(doc["bursts"]) == 3 and all(b["responses"] == {"200": 25} for b in doc["bursts"])
    assert set(doc) >= {"alone_p50_ms", "first_burst_p99_ms", "load_average_1m", "target_p99_ms", "meets_target"}
    assert "with a viewer token" in doc["workload"] and doc["token_check_us"] > 0  # every request is authenticated
