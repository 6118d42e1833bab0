"""The alerting service's self-metrics, registered in the registry the caller injects.

Counters are counted where things happen. What the store holds (alerts firing by severity, the
outbox's depth and the age of its oldest pending row per notifier) is read from the store when
Prometheus scrapes (``StoreGauges``), so the figures are exact at that moment even while the
consumer loop waits out a broker outage and the outbox workers deliver on their own threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import get_args

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from vigil.alerting.model import DomainKind
from vigil.alerting.store import AlertStore, Database

from vigil.clock import Clock
from vigil.metrics_catalog import counter, gauge_family

SEVERITIES = ("critical", "warning", "info")
DOMAIN_KINDS: tuple[str, ...] = get_args(DomainKind)  # a closed set: the gauge's labels stay bounded
# Priority bands over GPU-hours at risk, so the gauge's labels stay few: P1 is a job-sized outage
# (e.g. 64 GPUs for 2 h), P4 a single GPU's quick reset.
PRIORITY_BANDS = ((100.0, "P1"), (10.0, "P2"), (1.0, "P3"), (0.0, "P4"))


def priority_band(gpu_hours: float) -> str:
    return next(band for floor, band in PRIORITY_BANDS if gpu_hours >= floor or floor == 0.0)


class AlertingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.detections = counter(registry, "vigil_alerting_detections_total")
        self.predictions = counter(registry, "vigil_alerting_predictions_total")
        self.notifications = counter(registry, "vigil_notifications_total")
        self.pruned = counter(registry, "vigil_alerting_pruned_total")


class StoreGauges(Collector):
    """``vigil_alerts_firing{severity}``, ``vigil_outbox_pending{notifier}``,
    ``vigil_outbox_oldest_pending_age_seconds{notifier}`` and the open incidents
    (``incident_families``), queried when scraped (three indexed reads on a store connection of its
    own, SQLite or PostgreSQL). Every severity and configured notifier is shown, with 0 when it has
    nothing, so a dashboard sees 0 rather than no data."""

    def __init__(self, database: Database, notifiers: Sequence[str], clock: Clock) -> None:
        self._database = database
        self._notifiers = tuple(notifiers)
        self._clock = clock
        self._lock = threading.Lock()
        self._store: AlertStore | None = None  # opened on the first scrape, by the scraping thread

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            store = self._store = self._store or AlertStore(self._database)
            firing = store.firing_by_severity()
            outbox = store.pending_by_notifier()
            incidents = store.open_priorities()
            runs, steps = store.run_counts(), store.step_counts()
        now = self._clock.now()
        families = gauge_family("vigil_alerts_firing")
        for severity in sorted(set(SEVERITIES) | set(firing)):
            families.add_metric([severity], firing.get(severity, 0))
        pending, age = gauge_family("vigil_outbox_pending"), gauge_family("vigil_outbox_oldest_pending_age_seconds")
        for name in sorted(set(self._notifiers) | set(outbox)):
            count, oldest = outbox.get(name, (0, now))
            pending.add_metric([name], count)
            age.add_metric([name], max(0.0, now - oldest))
        yield from (families, pending, age, *incident_families(incidents))
        yield from (
            remediation_family("vigil_remediation_runs", runs),
            remediation_family("vigil_remediation_steps", steps),
        )

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def incident_families(open_incidents: Sequence[tuple[str, float]]) -> tuple[Metric, Metric]:
    """``vigil_incidents_open{priority,domain}`` and ``vigil_incidents_gpu_seconds_at_risk{domain}``
    (GPU-hours x 3600: base units). Every band and domain kind is shown (0 when none), so a dashboard
    sees 0 rather than no data."""
    counts = {(band, kind): 0 for _, band in PRIORITY_BANDS for kind in DOMAIN_KINDS}
    hours = dict.fromkeys(DOMAIN_KINDS, 0.0)
    for domain, gpu_hours in open_incidents:
        kind = domain.split(":", 1)[0]
        key = (priority_band(gpu_hours), kind)
        counts[key] = counts.get(key, 0) + 1
        hours[kind] = hours.get(kind, 0.0) + gpu_hours * 3600.0  # base unit: GPU-seconds
    opened, at_risk = gauge_family("vigil_incidents_open"), gauge_family("vigil_incidents_gpu_seconds_at_risk")
    for (band, kind), n in sorted(counts.items()):
        opened.add_metric([band, kind], n)
    for kind, total in sorted(hours.items()):
        at_risk.add_metric([kind], total)
    return opened, at_risk


def remediation_family(name: str, counts: Mapping[tuple[str, str], int]) -> Metric:
    """``vigil_remediation_runs{runbook,state}`` or ``vigil_remediation_steps{action,state}``: what the
    store holds (runs are kept, so a state's count only moves as runs move through it)."""
    family = gauge_family(name)
    for labels, n in sorted(counts.items()):
        family.add_metric(list(labels), n)
    return family
