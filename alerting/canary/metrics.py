"""The canary's Prometheus metrics. Labels stay bounded: probe and arm come from the probe files;
``version`` is the one an arm answered last (the series of a version that stopped answering is
removed), so a rollout adds no series that outlive it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from vigil.events import ProbeResult
from vigil.metrics_catalog import counter, gauge, histogram

VERDICT_VALUE = {"pass": 0.0, "marginal": 1.0, "fail": 2.0}


class CanaryMetrics:
    """The ``vigil_canary_*`` families of ``vigil.metrics_catalog``, in the registry the service was given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rounds = counter(registry, "vigil_canary_rounds_total")
        self.latency = histogram(registry, "vigil_canary_item_latency_seconds")
        self.ttft = histogram(registry, "vigil_canary_ttft_seconds")
        self.pass_ratio = gauge(registry, "vigil_canary_pass_ratio")
        self.verdict = gauge(registry, "vigil_canary_verdict")
        self.judgements = counter(registry, "vigil_canary_judgements_total")
        self.pending = gauge(registry, "vigil_canary_results_pending")
        self.dropped = counter(registry, "vigil_canary_results_dropped_total")
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
