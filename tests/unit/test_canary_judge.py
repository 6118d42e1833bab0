"""The canary judge on rounds: recorded from real servers (tests/fixtures/canary/rounds-*.jsonl) and
seeded synthetic ones whose truth is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from vigil.alerting.canary.judge import Criteria, Metric, criteria_from, judge, pooled, sample

from vigil.codec import decode
from vigil.events import ProbeItem, ProbeResult

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "canary"


def rounds(
    n: int,
    rng: np.random.Generator,
    items: int = 10,
    fail_p: float = 0.0,
    latency: float = 0.010,
    slow: float = 1.0,
    ttft: float | None = None,
) -> list[ProbeResult]:
    """``n`` rounds: per-item latencies log-normal around ``latency * slow`` with a shared per-round
    factor (the server's load), items failing independently with ``fail_p``."""
    out = []
    for r in range(n):
        load = float(rng.lognormal(0.0, 0.1))
        cells = []
        for i in range(items):
            ok = bool(rng.random() >= fail_p)
            seconds = latency * slow * load * float(rng.lognormal(0.0, 0.25))
            first = None if ttft is None else ttft * load * float(rng.lognormal(0.0, 0.2))
            cells.append(ProbeItem(f"i{i}", ok, seconds, "" if ok else "wrong", "7", ttft_s=first))
        passed = sum(c.ok for c in cells)
        out.append(ProbeResult(1.79e9 + r, "p@a", "m", passed == items, 0.01, passed / items, passed=passed,
                               total=items, items=tuple(cells)))
    return out


def test_a_degraded_quality_fails_with_fisher_and_names_the_items() -> None:
    rng = np.random.default_rng(1)
    verdict = judge(sample(rounds(5, rng, fail_p=0.5)), sample(rounds(5, rng)), Criteria(min_pass_ratio=0.0))
    quality = verdict.metrics[0]
    assert verdict.verdict == "fail" and quality.status == "fail"
    assert quality.p_value is not None and quality.p_value < verdict.alpha_per_test
    assert "Fisher" in quality.reason and verdict.failing and verdict.failing[0].answer == "7"


def test_the_hard_floor_fails_a_single_endpoint_without_baseline() -> None:
    rng = np.random.default_rng(2)
    bad = judge(sample(rounds(5, rng, fail_p=0.3)), None, Criteria(min_pass_ratio=0.9))
    assert bad.verdict == "fail" and "below the floor 90%" in bad.reasons[0]
    good = judge(sample(rounds(5, rng)), None, Criteria())
    assert good.verdict == "pass" and good.metrics[1].status == "pass"  # latency: no comparison


def test_a_small_quality_drop_is_not_a_fail_even_when_significant() -> None:
    """min_quality_drop: 3 points worse over 5,000 items is certain but below the 5-point floor."""
    rng = np.random.default_rng(3)
    canary, base = sample(rounds(500, rng, fail_p=0.05)), sample(rounds(500, rng, fail_p=0.02))
    loose = judge(canary, base, Criteria(min_pass_ratio=0.0, min_quality_drop=0.05))
    strict = judge(canary, base, Criteria(min_pass_ratio=0.0, min_quality_drop=0.01))
    assert loose.metrics[0].status == "pass" and strict.metrics[0].status == "fail"
    assert loose.metrics[0].p_value == strict.metrics[0].p_value < 1e-6


def test_latency_needs_significance_and_the_effect_floor() -> None:
    rng = np.random.default_rng(4)
    base = sample(rounds(5, rng))
    twice = judge(sample(rounds(5, rng, slow=2.0)), base, Criteria())
    assert twice.metrics[1].status == "fail" and twice.verdict == "marginal"  # latency is not critical
    nudged = judge(sample(rounds(200, rng, slow=1.08)), sample(rounds(200, rng)), Criteria())
    assert nudged.metrics[1].p_value is not None and nudged.metrics[1].p_value < 1e-3
    assert nudged.metrics[1].status == "pass"  # +8% is real, and below the +20% floor
    critical = Criteria(latency=Metric(critical=True))
    assert judge(sample(rounds(5, rng, slow=2.0)), base, critical).verdict == "fail"


def test_a_latency_limit_applies_without_a_baseline() -> None:
    rng = np.random.default_rng(5)
    criteria = Criteria(latency=Metric(max_s=0.005, critical=True))
    assert judge(sample(rounds(5, rng)), None, criteria).verdict == "fail"


def test_ttft_is_judged_only_where_streamed_items_exist() -> None:
    rng = np.random.default_rng(6)
    plain = judge(sample(rounds(5, rng)), sample(rounds(5, rng)), Criteria())
    assert plain.metrics[2].status == "nodata"
    assert plain.alpha_per_test == pytest.approx(0.01 / 2)  # quality and latency tested
    slow_first = judge(sample(rounds(5, rng, ttft=0.2)), sample(rounds(5, rng, ttft=0.1)), Criteria())
    assert slow_first.alpha_per_test == pytest.approx(0.01 / 3)
    assert slow_first.metrics[2].status == "fail" and "Mann-Whitney" in slow_first.metrics[2].reason


def test_alpha_is_split_over_comparisons_made_together() -> None:
    rng = np.random.default_rng(7)
    one = judge(sample(rounds(5, rng)), sample(rounds(5, rng)), Criteria(), comparisons=1)
    eight = judge(sample(rounds(5, rng)), sample(rounds(5, rng)), Criteria(), comparisons=8)
    assert eight.alpha_per_test == pytest.approx(one.alpha_per_test / 8)


def test_a_healthy_canary_against_itself_rarely_fails() -> None:
    """The false-fail rate over 400 independent judgements of identical healthy arms (1% flaky items,
    shared per-round load) stays near alpha (0.01), far from a per-round 0.05."""
    rng = np.random.default_rng(8)
    fails = sum(
        judge(sample(rounds(5, rng, fail_p=0.01)), sample(rounds(5, rng, fail_p=0.01)), Criteria()).verdict == "fail"
        for _ in range(400)
    )
    assert fails <= 8


def test_scores_follow_kayenta_weights_and_thresholds() -> None:
    rng = np.random.default_rng(9)
    base = sample(rounds(5, rng, ttft=0.1))
    slow = sample(rounds(5, rng, slow=3.0, ttft=0.1))
    verdict = judge(slow, base, Criteria(marginal_score=60.0))
    assert verdict.score == pytest.approx(100 * 2 / 3) and verdict.verdict == "marginal"
    both = judge(sample(rounds(5, rng, slow=3.0, ttft=0.3)), base, Criteria())
    statuses = [m.status for m in both.metrics]
    assert statuses == ["pass", "fail", "fail"] and both.verdict == "fail"  # score 33 < marginal 50


def test_pooled_baselines_and_criteria_from_the_file_form() -> None:
    rng = np.random.default_rng(10)
    parts = [sample(rounds(2, rng)), sample(rounds(3, rng))]
    merged = pooled(parts)
    assert merged.rounds == 5 and merged.total == 50 and merged.latency.size == 50
    criteria = criteria_from({"window": 3, "latency": {"critical": True, "min_shift": 0.5}})
    assert criteria.window == 3 and criteria.latency.critical and criteria.latency.min_shift == 0.5
    assert criteria.quality.critical and criteria.alpha == 0.01


def _recorded(name: str) -> dict[str, list[ProbeResult]]:
    arms: dict[str, list[ProbeResult]] = {}
    for line in (FIXTURES / name).read_text().splitlines():
        result = decode(line.encode())
        assert isinstance(result, ProbeResult)
        arms.setdefault(f"{result.target}:{result.version}", []).append(result)
    return arms


def test_recorded_mlserver_rounds_v2_fails_against_v1_and_v1_passes_against_itself() -> None:
    arms = _recorded("rounds-mlserver.jsonl")
    v1, v2 = arms["digits@v1:v1"], arms["digits@serving:v2"]
    assert len(v1) >= 5 and len(v2) >= 5
    criteria = Criteria()
    failed = judge(sample(v2[:5]), sample(v1[:5]), criteria)
    assert failed.verdict == "fail" and {f.id for f in failed.failing} >= {"digit-0", "digit-1"}
    assert json.dumps(failed.to_json())  # serialisable, as it goes into the detection's reason
    assert judge(sample(v1[:5]), sample(v1[5:10] or v1[:5]), criteria).verdict == "pass"
