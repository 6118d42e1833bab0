"""``vigil bench detectors`` runs end to end on a tiny workload and prints the documented figures
(the figures themselves come from the full-size run, never from a test)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner
from vigil.analytics.eval.detectors import workload
from vigil.analytics.models import registry

from vigil.cli.app import build_app


def test_bench_detectors_prints_one_row_per_model_plus_the_live_stages() -> None:
    result = CliRunner().invoke(build_app(), ["bench", "detectors", "--json", "--series", "160", "--ticks", "80"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["machine"] and doc["workload"]["samples"] == 160 * 80 and doc["threads"] == 1
    rows = {r["name"]: r for r in doc["detectors"]}
    assert set(registry.names()) | {"zscore (live stage)", "peers (live stage)"} == set(rows)
    for row in rows.values():
        assert row["samples_per_s"] > 0 and 0 < row["state_bytes_per_series"] <= 2048
    assert rows["robust_z"]["form"] == "bank"


def test_workload_is_seeded_and_has_gaps_spikes_and_lasting_steps() -> None:
    Y = workload(400, 300)
    np.testing.assert_array_equal(Y, workload(400, 300))
    assert 0.002 < np.isnan(Y).mean() < 0.01
    first, last = np.nanmedian(Y[:50], axis=0), np.nanmedian(Y[-50:], axis=0)
    spread = np.nanstd(Y[:50], axis=0)
    assert 2 <= int(np.sum(np.abs(last - first) > 8 * spread)) <= 8  # about 1% of the series stepped
