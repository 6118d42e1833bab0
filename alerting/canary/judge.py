"""The canary judge: is the canary (a new version, or one node) worse than its baseline? Pure.

Kayenta's shape: each metric is classified on its own (pass, fail, or no data), then an aggregate
score decides: ``100 * (weight of passing metrics) / (weight of metrics with data)``; a failed
*critical* metric fails the judgement whatever the score; otherwise the score against
``pass_score`` and ``marginal_score`` gives pass / marginal / fail. The metrics, over a window of
rounds of each side:

- **quality**, the share of golden items that passed: a one-sided Fisher exact test (is the
  canary's pass rate lower?) that fails only when the drop is also at least ``min_quality_drop``;
  and, baseline or not, a hard floor: a window below ``min_pass_ratio`` fails;
- **latency**, each answered item's request-to-answer time: a one-sided Mann-Whitney U test (is the
  canary slower?) that fails only when the median also rose by ``min_shift`` (relative) and
  ``min_shift_s`` (absolute); an optional ``max_s`` bounds the median without a baseline;
- **ttft**, time to first token of streamed items: as latency.

**Multiple comparisons.** ``alpha`` is the false-fail rate of one judgement: it is split evenly
(Bonferroni) over the tests that judgement makes (metrics with data, times the comparisons made
together, e.g. every node against the others). Across rounds the windows tumble: the service
judges an arm once per ``window`` rounds, on those rounds only, so each round is tested once and a
healthy canary fails at most ``alpha`` of its judgements, never ``0.05`` per round re-tested.
The effect-size floors keep a statistically certain but harmless difference (a 3% slower median
over a thousand items) from failing anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from vigil.events import ProbeResult

FloatArray = npt.NDArray[np.float64]
Status = Literal["pass", "fail", "nodata"]
Verdict = Literal["pass", "marginal", "fail"]
MIN_SAMPLES = 3  # fewer latencies than this on a side: no rank test (its p-value cannot get small)


@dataclass(frozen=True, slots=True)
class Metric:
    weight: float = 1.0
    critical: bool = False
    min_shift: float = 0.2  # latency, ttft: relative rise of the median that can fail
    min_shift_s: float = 0.002  # and absolute rise, seconds
    max_s: float | None = None  # a median above this fails, baseline or not


@dataclass(frozen=True, slots=True)
class Criteria:
    window: int = 5
    alpha: float = 0.01
    min_pass_ratio: float = 0.9
    min_quality_drop: float = 0.05
    pass_score: float = 95.0
    marginal_score: float = 50.0
    quality: Metric = field(default_factory=lambda: Metric(critical=True))
    latency: Metric = field(default_factory=Metric)
    ttft: Metric = field(default_factory=Metric)


@dataclass(frozen=True, slots=True)
class Failing:
    """A golden item that failed in the window: how often, and its latest answer and reason."""

    id: str
    times: int
    answer: str
    reason: str


@dataclass(frozen=True, slots=True)
class Sample:
    """One side of a comparison: the window's rounds reduced to counts and arrays."""

    rounds: int
    passed: int
    total: int
    latency: FloatArray
    ttft: FloatArray
    failing: tuple[Failing, ...] = ()

    @property
    def ratio(self) -> float:
        return self.passed / self.total if self.total else 0.0


def sample(rounds: Sequence[ProbeResult]) -> Sample:
    """Counts, answered items' latencies and TTFTs over ``rounds``, and the items that failed."""
    latencies: list[float] = []
    ttfts: list[float] = []
    failed: Counter[str] = Counter()
    last: dict[str, tuple[str, str]] = {}
    for result in rounds:
        for item in result.items:
            if item.answer or item.ok:  # it answered (right or wrong): its latency is a service time
                latencies.append(item.latency_s)
            if item.ttft_s is not None:
                ttfts.append(item.ttft_s)
            if not item.ok:
                failed[item.id] += 1
                last[item.id] = (item.answer, item.reason)
    failing = tuple(Failing(i, n, *last[i]) for i, n in failed.most_common())
    return Sample(
        rounds=len(rounds),
        passed=sum(r.passed for r in rounds),
        total=sum(r.total for r in rounds),
        latency=np.asarray(latencies, dtype=np.float64),
        ttft=np.asarray(ttfts, dtype=np.float64),
        failing=failing,
    )


def pooled(samples: Sequence[Sample]) -> Sample:
    """Several sides as one (the other nodes, as the baseline of one node)."""
    return Sample(
        rounds=sum(s.rounds for s in samples),
        passed=sum(s.passed for s in samples),
        total=sum(s.total for s in samples),
        latency=np.concatenate([s.latency for s in samples]) if samples else np.empty(0),
        ttft=np.concatenate([s.ttft for s in samples]) if samples else np.empty(0),
    )


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    status: Status
    reason: str
    canary: float | None = None
    baseline: float | None = None
    p_value: float | None = None
    weight: float = 1.0
    critical: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "canary": self.canary,
            "baseline": self.baseline,
            "p_value": self.p_value,
            "weight": self.weight,
            "critical": self.critical,
        }


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    score: float
    metrics: tuple[MetricResult, ...]
    alpha_per_test: float
    failing: tuple[Failing, ...] = ()

    @property
    def reasons(self) -> list[str]:
        return [f"{m.name}: {m.reason}" for m in self.metrics if m.status == "fail"]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": round(self.score, 1),
            "reasons": self.reasons,
            "alpha_per_test": self.alpha_per_test,
            "metrics": [m.to_json() for m in self.metrics],
            "failing_items": [
                {"id": f.id, "times": f.times, "answer": f.answer, "reason": f.reason} for f in self.failing[:10]
            ],
        }


def judge(canary: Sample, baseline: Sample | None, criteria: Criteria, comparisons: int = 1) -> Judgement:
    """Judge ``canary`` against ``baseline`` (None: the floors only). ``comparisons``: how many such
    judgements are made together (each node against the rest), for the alpha split."""
    has_baseline = baseline is not None and baseline.total > 0
    tests = (1 + _enough(canary.latency, baseline) + _enough(canary.ttft, baseline, "ttft")) if has_baseline else 1
    alpha = criteria.alpha / (tests * max(1, comparisons))
    other = baseline if has_baseline else None
    metrics = (
        _quality(canary, other, criteria, alpha),
        _timing("latency", canary.latency, other.latency if other else None, criteria.latency, alpha),
        _timing("ttft", canary.ttft, other.ttft if other else None, criteria.ttft, alpha),
    )
    verdict, score = _aggregate(metrics, criteria)
    return Judgement(verdict, score, metrics, alpha, canary.failing)


def _enough(values: FloatArray, baseline: Sample | None, which: str = "latency") -> int:
    other = getattr(baseline, which) if baseline is not None else np.empty(0)
    return int(values.size >= MIN_SAMPLES and other.size >= MIN_SAMPLES)


def _quality(canary: Sample, baseline: Sample | None, criteria: Criteria, alpha: float) -> MetricResult:
    metric = criteria.quality
    if canary.total == 0:
        return MetricResult("quality", "nodata", "no items answered or failed", weight=metric.weight,
                            critical=metric.critical)
    ratio = canary.ratio
    base = baseline.ratio if baseline is not None else None
    common: dict[str, Any] = {"canary": ratio, "baseline": base, "weight": metric.weight, "critical": metric.critical}
    floor = criteria.min_pass_ratio
    below = f"pass ratio {ratio:.0%} ({canary.passed}/{canary.total}) is below the floor {floor:.0%}"
    if baseline is None:
        if ratio < floor:
            return MetricResult("quality", "fail", below, **common)
        return MetricResult("quality", "pass", f"pass ratio {ratio:.0%} (no baseline)", **common)
    table = [[canary.passed, canary.total - canary.passed], [baseline.passed, baseline.total - baseline.passed]]
    p = float(stats.fisher_exact(table, alternative="less").pvalue)
    drop = baseline.ratio - ratio
    text = f"pass ratio {ratio:.0%} vs {baseline.ratio:.0%} (Fisher p={p:.2g}, alpha {alpha:.2g})"
    if ratio < floor:  # the floor fails it whatever the test says; the test's figures still tell how sure
        return MetricResult("quality", "fail", f"{below}; {text}", p_value=p, **common)
    status: Status = "fail" if p < alpha and drop >= criteria.min_quality_drop else "pass"
    return MetricResult("quality", status, text, p_value=p, **common)


def _timing(name: str, canary: FloatArray, baseline: FloatArray | None, metric: Metric, alpha: float) -> MetricResult:
    common: dict[str, Any] = {"weight": metric.weight, "critical": metric.critical}
    if canary.size == 0:
        return MetricResult(name, "nodata", "no samples", **common)
    median = float(np.median(canary))
    if metric.max_s is not None and median > metric.max_s:
        why = f"median {median * 1000:.1f} ms is above the limit {metric.max_s * 1000:.1f} ms"
        return MetricResult(name, "fail", why, canary=median, **common)
    if baseline is None or canary.size < MIN_SAMPLES or baseline.size < MIN_SAMPLES:
        return MetricResult(name, "pass", f"median {median * 1000:.1f} ms (no comparison)", canary=median, **common)
    base = float(np.median(baseline))
    p = float(stats.mannwhitneyu(canary, baseline, alternative="greater").pvalue)
    shift = median / base - 1.0 if base > 0 else float("inf")
    slower = shift >= metric.min_shift and median - base >= metric.min_shift_s
    text = (
        f"median {median * 1000:.1f} ms vs {base * 1000:.1f} ms ({shift:+.0%}; Mann-Whitney p={p:.2g}, "
        f"alpha {alpha:.2g}, floor +{metric.min_shift:.0%})"
    )
    status: Status = "fail" if p < alpha and slower else "pass"
    return MetricResult(name, status, text, canary=median, baseline=base, p_value=p, **common)


def _aggregate(metrics: Sequence[MetricResult], criteria: Criteria) -> tuple[Verdict, float]:
    judged = [m for m in metrics if m.status != "nodata"]
    total = sum(m.weight for m in judged)
    score = 100.0 * sum(m.weight for m in judged if m.status == "pass") / total if total > 0 else 0.0
    if any(m.critical and m.status == "fail" for m in judged) or not judged:
        return "fail", score
    if score >= criteria.pass_score:
        return "pass", score
    return ("marginal" if score >= criteria.marginal_score else "fail"), score


def criteria_from(raw: Mapping[str, Any]) -> Criteria:
    """``criteria`` as written in a probe file (already schema-checked) over the defaults."""
    base = Criteria()
    metrics = {name: Metric(**{**_fields(getattr(base, name)), **raw.get(name, {})}) for name in ("quality", "latency",
                                                                                                 "ttft")}
    scalars = {k: v for k, v in raw.items() if k not in metrics}
    return Criteria(**{**_fields(base), **scalars, **metrics})


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}
