"""The outbox dispatcher: sends what the service enqueued, in order, with one retry stage.

A row is marked delivered only after its notifier said so, so a crash mid-send resends it after a
restart (at-least-once to the receiver; the payload's ``dedup_key`` lets the receiver drop the rare
duplicate). Rows are never lost: a pending row stays pending until delivered, rejected
(permanent) or out of attempts.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from vigil.alerting.metrics import AlertingMetrics
from vigil.alerting.notifiers.base import DeliveryResult, Notifier, deliver
from vigil.alerting.store import AlertStore, OutboxRow

from vigil.clock import Clock

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff with "equal jitter": half the delay is fixed so retries never bunch at zero,
    half is random so many alerts failing together do not retry in lockstep."""

    def __init__(self, initial: float, maximum: float, max_attempts: int, rng: random.Random) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.max_attempts = max_attempts
        self._rng = rng

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        base = min(self.maximum, self.initial * 2.0 ** min(max(attempts - 1, 0), 62))
        return base / 2 + self._rng.uniform(0.0, base / 2)

    def exhausted(self, attempts: int) -> bool:
        return self.max_attempts > 0 and attempts >= self.max_attempts


class OutboxDispatcher:
    def __init__(
        self,
        db_path: Path,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        metrics: AlertingMetrics,
        backoff: Backoff,
        batch: int = 100,
        interval: float = 0.5,
    ) -> None:
        self._store = AlertStore(db_path)  # its own connection: this runs on its own thread
        self._notifiers = dict(notifiers)
        self._clock = clock
        self._metrics = metrics
        self._backoff = backoff
        self._batch = batch
        self._interval = interval
        self._wake = threading.Event()

    def wake(self) -> None:
        """Tell an idle dispatcher that there is new work (called after the service enqueues)."""
        self._wake.set()

    def drain_once(self, stop: threading.Event | None = None) -> int:
        """Send every row that is due now, oldest first; returns how many attempts were made.

        Each row is tried at most once per call, so a zero backoff cannot spin here.
        """
        tried: set[int] = set()
        while stop is None or not stop.is_set():
            rows = [r for r in self._store.due(self._clock.now(), self._batch) if r.id not in tried]
            if not rows:
                break
            for row in rows:
                if stop is not None and stop.is_set():
                    break
                tried.add(row.id)
                self._attempt(row)
        self._metrics.outbox_pending.set(self._store.pending_count())
        return len(tried)

    def run(self, stop: threading.Event) -> None:
        """Drain until ``stop`` is set; sleeps until the next row is due, a wake-up, or ``interval``."""
        while not stop.is_set():
            self._wake.clear()
            try:
                self.drain_once(stop)
                wait = self._next_wait()
            except sqlite3.OperationalError as exc:  # locked/busy past the timeout: try again shortly
                log.warning("outbox scan failed, retrying: %s", exc)
                wait = self._interval
            self._wake.wait(wait)

    def close(self) -> None:
        for notifier in self._notifiers.values():
            notifier.close()
        self._store.close()

    def _next_wait(self) -> float:
        due = self._store.next_due_at()
        if due is None:
            return self._interval
        return min(self._interval, max(0.0, due - self._clock.now()))

    def _attempt(self, row: OutboxRow) -> None:
        result = self._send(row)
        attempts = row.attempts + 1
        self._metrics.notifications.labels(row.notifier, result.outcome).inc()
        now = self._clock.now()
        if result.outcome == "delivered":
            self._store.finish(row, "delivered", None, now)
        elif result.outcome == "permanent":
            log.error("notification %d to %s failed permanently: %s", row.id, row.notifier, result.reason)
            self._store.finish(row, "failed", result.reason, now)
        elif self._backoff.exhausted(attempts):
            log.error(
                "notification %d to %s gave up after %d attempts: %s", row.id, row.notifier, attempts, result.reason
            )
            self._store.finish(row, "failed", f"gave up after {attempts} attempts: {result.reason}", now)
        else:
            delay = self._backoff.delay(attempts)
            if result.retry_after is not None:
                delay = max(delay, min(result.retry_after, self._backoff.maximum))
            log.warning(
                "notification %d to %s failed (attempt %d), retrying in %.1fs: %s",
                row.id,
                row.notifier,
                attempts,
                delay,
                result.reason,
            )
            self._store.reschedule(row, now + delay, result.reason)

    def _send(self, row: OutboxRow) -> DeliveryResult:
        notifier = self._notifiers.get(row.notifier)
        if notifier is None:
            return DeliveryResult.permanent(f"notifier {row.notifier!r} is not configured")
        try:
            return deliver(notifier, row.payload)
        except Exception as exc:  # a buggy plugin must not stop every other notification
            log.exception("notifier %s raised instead of returning a result", row.notifier)
            return DeliveryResult.retryable(f"notifier raised: {exc!r}")
