"""The alerting service's self-metrics, registered in the registry the caller injects.

Counters are counted where things happen. What the store holds (alerts firing by severity, the
outbox's depth and the age of its oldest pending row per notifier) is read from the store when
Prometheus scrapes (``StoreGauges``), so the figures are exact at that moment even while the
consumer loop waits out a broker outage and the outbox workers deliver on their own threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from vigil.alerting.store import Database
from vigil.alerting.store.schema import alerts, outbox

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
    aggregates on a connection of its own, checked out per scrape). Every severity and configured
    notifier is shown, with 0 when it has nothing, so a dashboard sees 0 rather than no data."""

    def __init__(self, database: Database, notifiers: Sequence[str], clock: Clock) -> None:
        self._db = database
        self._notifiers = tuple(notifiers)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        firing_q = (
            select(alerts.c.severity, func.count()).where(alerts.c.status == "firing").group_by(alerts.c.severity)
        )
        outbox_q = (
            select(outbox.c.notifier, func.count(), func.min(outbox.c.created_at))
            .where(outbox.c.state == "pending")
            .group_by(outbox.c.notifier)
        )
        with self._db.connect() as conn:
            firing = {str(row[0]): int(row[1]) for row in conn.execute(firing_q)}
            pending_rows = {str(row[0]): (int(row[1]), row[2]) for row in conn.execute(outbox_q)}
        now = self._clock.now()
        families = gauge_family("vigil_alerts_firing")
        for severity in sorted(set(SEVERITIES) | set(firing)):
            families.add_metric([severity], firing.get(severity, 0))
        pending, age = gauge_family("vigil_outbox_pending"), gauge_family("vigil_outbox_oldest_pending_age_seconds")
        for name in sorted(set(self._notifiers) | set(pending_rows)):
            count, oldest = pending_rows.get(name, (0, None))
            pending.add_metric([name], count)
            age.add_metric([name], max(0.0, now - oldest) if oldest is not None else 0.0)
        yield from (families, pending, age)

    def close(self) -> None:
        """Nothing held between scrapes (each checks a connection out of the store's engine)."""
