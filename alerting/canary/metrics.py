"""The canary's Prometheus metrics. Labels stay bounded: probe and arm come from the probe files;
``version`` is the one an arm answered last (the series of a version that stopped answering is
removed), so a rollout adds no series that outlive it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vigil.events import ProbeResult

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
VERDICT_VALUE = {"pass": 0.0, "marginal": 1.0, "fail": 2.0}


class CanaryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rounds = Counter(
            "vigil_canary_rounds", "Canary rounds by outcome (ok, failed, not_ready)", ["probe", "arm", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "vigil_canary_item_latency_seconds", "Golden item request-to-answer time", ["probe", "arm"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.ttft = Histogram(
            "vigil_canary_ttft_seconds", "Time to first token of streamed golden items", ["probe", "arm"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.pass_ratio = Gauge(
            "vigil_canary_pass_ratio", "Share of golden items that passed in the arm's last round",
            ["probe", "arm", "version"], registry=registry,
        )
        self.verdict = Gauge(
            "vigil_canary_verdict", "The arm's last judgement: 0 pass, 1 marginal, 2 fail", ["probe", "arm"],
            registry=registry,
        )
        self.judgements = Counter(
            "vigil_canary_judgements", "Judgements by verdict", ["probe", "verdict"], registry=registry
        )
        self.pending = Gauge("vigil_canary_results_pending", "Results and detections not yet on the broker",
                             registry=registry)
        self.dropped = Counter(
            "vigil_canary_results_dropped", "Results dropped because the buffer was full while the broker was away",
            registry=registry,
        )
        self._versions: dict[tuple[str, str], str] = {}

    def observe(self, result: ProbeResult) -> None:
        arm = result.target.split("@", 1)[1]
        outcome = "ok" if result.ok else "not_ready" if result.detail.startswith("not ready") else "failed"
        self.rounds.labels(result.probe, arm, outcome).inc()
        latency = self.latency.labels(result.probe, arm)
        ttft = self.ttft.labels(result.probe, arm)
        for item in result.items:
            if item.ok or item.answer:
                latency.observe(item.latency_s)
            if item.ttft_s is not None:
                ttft.observe(item.ttft_s)
        old = self._versions.get((result.probe, arm))
        if old is not None and old != result.version:
            self.pass_ratio.remove(result.probe, arm, old)
        self._versions[(result.probe, arm)] = result.version
        if result.quality is not None:
            self.pass_ratio.labels(result.probe, arm, result.version).set(result.quality)

    def judged(self, probe: str, arm: str, verdict: str) -> None:
        self.verdict.labels(probe, arm).set(VERDICT_VALUE[verdict])
        self.judgements.labels(probe, verdict).inc()
