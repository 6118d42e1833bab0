"""The alerting service's self-metrics, registered in the registry the caller injects.

Counters are counted where things happen. What the store holds (alerts firing by severity, the
outbox's depth and the age of its oldest pending row per notifier) is read from the store when
Prometheus scrapes (``StoreGauges``), so the figures are exact at that moment even while the
consumer loop waits out a broker outage and the outbox workers deliver on their own threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from vigil.alerting.store import AlertStore, Database

from vigil.clock import Clock
from vigil.metrics_catalog import counter, gauge_family

SEVERITIES = ("critical", "warning", "info")


class AlertingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.detections = counter(registry, "vigil_alerting_detections_total")
        self.predictions = counter(registry, "vigil_alerting_predictions_total")
        self.notifications = counter(registry, "vigil_notifications_total")
        self.pruned = counter(registry, "vigil_alerting_pruned_total")


class StoreGauges(Collector):
    """``vigil_alerts_firing{severity}``, ``vigil_outbox_pending{notifier}`` and
    ``vigil_outbox_oldest_pending_age_seconds{notifier}``, queried when scraped (two indexed
    aggregates on a store connection of its own, SQLite or PostgreSQL). Every severity and configured notifier is
    shown, with 0 when it has nothing, so a dashboard sees 0 rather than no data."""

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
        now = self._clock.now()
        alerts = gauge_family("vigil_alerts_firing")
        for severity in sorted(set(SEVERITIES) | set(firing)):
            alerts.add_metric([severity], firing.get(severity, 0))
        pending, age = gauge_family("vigil_outbox_pending"), gauge_family("vigil_outbox_oldest_pending_age_seconds")
        for name in sorted(set(self._notifiers) | set(outbox)):
            count, oldest = outbox.get(name, (0, now))
            pending.add_metric([name], count)
            age.add_metric([name], max(0.0, now - oldest))
        yield from (alerts, pending, age)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
