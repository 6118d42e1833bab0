"""Retention: finished outbox rows, old notification-log entries and long-resolved alerts are deleted
periodically on their own thread, in small transactions, so neither the API nor the service waits
on a large delete. What it never touches is listed in :class:`~vigil.alerting.config.RetentionConfig`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError
from vigil.alerting.config import RetentionConfig
from vigil.alerting.metrics import AlertingMetrics
from vigil.alerting.store import AlertStore

from vigil.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pruned:
    outbox: int
    notification_log: int
    alerts: int


class Pruner:
    def __init__(self, store: AlertStore, config: RetentionConfig, clock: Clock, metrics: AlertingMetrics) -> None:
        self._store = store  # its own connection: this runs on its own thread
        self._config = config
        self._clock = clock
        self._metrics = metrics

    def prune_once(self) -> Pruned:
        """Delete everything past retention now, batch by batch; returns how much went per table."""
        before = self._clock.now() - self._config.max_age
        pruned = Pruned(
            outbox=self._drain(self._store.prune_outbox, before),
            notification_log=self._drain(self._store.prune_notification_log, before),
            alerts=self._drain(self._store.prune_resolved, before),
        )
        for table in ("outbox", "notification_log", "alerts"):
            self._metrics.pruned.labels(table).inc(getattr(pruned, table))
        if pruned.outbox or pruned.notification_log or pruned.alerts:
            log.info("retention pruned %s", pruned)
        return pruned

    def run(self, stop: threading.Event) -> None:
        """Prune at start, then every ``interval`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.prune_once()
            except OperationalError as exc:  # busy past the timeout: the next round catches up
                log.warning("retention pruning failed, retrying next round: %s", exc)
            stop.wait(self._config.interval)

    def close(self) -> None:
        self._store.close()

    def _drain(self, prune: Callable[[float, int], int], before: float) -> int:
        total = 0
        while True:
            deleted = prune(before, self._config.batch)
            total += deleted
            if deleted < self._config.batch:
                return total
