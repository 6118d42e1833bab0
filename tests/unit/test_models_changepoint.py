"""Throughput change point: a 10 % drop buried in noise is found, one stalled step is not, the alarm ends."""

from __future__ import annotations

import numpy as np
from vigil.analytics.models.changepoint import ChangePointDetector

H = 8.0  # the decision threshold a service would page at


def tokens(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1.0e5 * (1 + 0.03 * rng.normal(size=rows))  # 3 % step-to-step noise


def test_a_ten_percent_throughput_drop_is_found_within_a_few_steps() -> None:
    x = tokens(1500)
    x[1000:] *= 0.9  # about 3 sigma of one step's noise: a z-score on single steps pages rarely
    model = ChangePointDetector(["tokens_per_s"])
    scores = model.process_many(x[:, None])
    assert scores[:1000].max() < H
    first = 1000 + int(np.argmax(scores[1000:] > H))
    assert scores[first] > H and first - 1000 <= 6
    reason = model.explain({"tokens_per_s": float(x[first])})
    assert reason["feature"] == "tokens_per_s" and reason["direction"] == "down"


def test_healthy_noise_never_pages_over_a_long_run() -> None:
    model = ChangePointDetector(["tokens_per_s", "step_s"])
    x = np.column_stack([tokens(20_000, 3), 0.5 * (1 + 0.03 * np.random.default_rng(4).normal(size=20_000))])
    assert model.process_many(x).max() < H


def test_one_stalled_step_is_not_a_change_point_but_a_single_step_z_would_page() -> None:
    x = tokens(600)
    x[500] = 1.0e4  # one step at a tenth of the throughput (a checkpoint save)
    scores = ChangePointDetector(["tokens_per_s"]).process_many(x[:, None])
    assert scores[500:].max() < H
    assert abs(x[500] - 1e5) / 3e3 > 20


def test_after_a_lasting_change_the_baseline_adapts_and_the_score_falls_back() -> None:
    x = tokens(3000)
    x[1000:] *= 0.8
    scores = ChangePointDetector(["tokens_per_s"]).process_many(x[:, None])
    assert scores[1005:1100].min() > H
    assert scores[2000:].max() < H  # the new throughput is the norm: the alert resolves


def test_missing_steps_leave_the_sums_unchanged() -> None:
    model = ChangePointDetector(["tokens_per_s"])
    x = tokens(100)
    x[40:] *= 0.85
    held = model.process_many(x[:60, None])[-1]
    before = model.state()["s"]
    gap = model.process_many(np.full((5, 1), np.nan))
    assert model.state()["s"] == before and held > H
    np.testing.assert_array_equal(gap, held)  # no evidence either way: the score holds
