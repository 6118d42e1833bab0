"""The alerting service's self-metrics, registered in the registry the caller injects.

Counters are counted where things happen. What the store holds (alerts firing by severity, the
outbox's depth and the age of its oldest pending row per notifier) is read from SQLite when
Prometheus scrapes (``StoreGauges``), so the figures are exact at that moment even while the
consumer loop waits out a broker outage and the outbox workers deliver on their own threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from vigil.alerting.store import connect

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
    aggregates on a read-only connection of its own). Every severity and configured notifier is
    shown, with 0 when it has nothing, so a dashboard sees 0 rather than no data."""

    def __init__(self, db_path: Path, notifiers: Sequence[str], clock: Clock) -> None:
        self._db_path = db_path
        self._notifiers = tuple(notifiers)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            conn = self._conn = self._conn or connect(self._db_path, readonly=True)
            firing = dict(conn.execute("SELECT severity, COUNT(*) FROM alerts WHERE status = 'firing' GROUP BY 1"))
            outbox = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    "SELECT notifier, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending' GROUP BY 1"
                )
            }
        now = self._clock.now()
        alerts = gauge_family("vigil_alerts_firing")
        for severity in sorted(set(SEVERITIES) | set(firing)):
            alerts.add_metric([severity], firing.get(severity, 0))
        pending, age = gauge_family("vigil_outbox_pending"), gauge_family("vigil_outbox_oldest_pending_age_seconds")
        for name in sorted(set(self._notifiers) | set(outbox)):
            count, oldest = outbox.get(name, (0, None))
            pending.add_metric([name], count)
            age.add_metric([name], max(0.0, now - oldest) if oldest is not None else 0.0)
        yield from (alerts, pending, age)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
