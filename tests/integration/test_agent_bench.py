"""``vigil bench agent --json`` runs end to end: the agent process publishes, the figures are read back.

It checks the benchmark works, not the figures (benchmarks print figures; tests do not time)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vigil.cli.app import build_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_agent_measures_a_running_agent_and_reads_its_batches_back() -> None:
    args = ["bench", "agent", "--json", "--seconds", "3", "--collectors", "gpu_like=tests.agent_collectors_gpu"]
    out = CliRunner().invoke(build_app(), [*args, "--options", '{"gpu_like": {"gpus": 2}}'])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)  # the whole of stdout is the document
    assert result["exit_code"] == 0, result["log_tail"]
    assert result["batches_published"] >= 2
    assert result["batches_read_back"] == result["batches_published"]
    assert result["samples_read_back"] == result["samples_published"] == 80 * result["batches_published"]
    assert result["cpu_percent_of_one_core"] >= 0 and result["peak_rss_mb"] > 10
    assert "gpu_like" in result["workload"] and '"gpus": 2' in result["workload"]
