"""``vigil bench canary`` runs end to end (short) and counts what it says it counts."""

from __future__ import annotations

import json

from typer.testing import CliRunner
from vigil.alerting.canary.bench import false_fails, healthy_rounds

from vigil.cli.app import build_app


def test_the_false_fail_figure_counts_every_judgement_the_board_makes() -> None:
    out = false_fails(rounds=50, items=10, window=5, flaky=0.02, seed=1)
    assert out["arms"]["judgements"] == 10  # the canary arm, once per tumbling window
    assert out["nodes"]["judgements"] == 80  # 8 nodes, each once per window
    for mode in ("arms", "nodes"):
        counts = out[mode]
        assert counts["pass"] + counts["marginal"] + counts["fail"] == counts["judgements"]


def test_healthy_rounds_are_seeded() -> None:
    import numpy as np

    one = healthy_rounds(np.random.default_rng(4), "p", "a", 3, 5, 0.5)
    two = healthy_rounds(np.random.default_rng(4), "p", "a", 3, 5, 0.5)
    assert one == two and {r.target for r in one} == {"p@a"}
    assert sum(r.passed for r in one) < 15  # flaky 0.5: some items failed


def test_vigil_bench_canary_prints_its_figures() -> None:
    result = CliRunner().invoke(build_app(), ["bench", "canary", "--json", "--seconds", "0.5", "--rounds", "20"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["throughput"]["items_per_s"] > 0 and figures["judge"]["judge_us"] > 0
    assert figures["false_fails"]["arms"]["judgements"] == 4
