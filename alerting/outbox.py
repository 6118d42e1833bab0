"""The outbox dispatcher: one worker per receiver (notifier) sends what the service enqueued, with one
retry stage.

Each receiver has its own thread and its own SQLite connection, so a receiver that hangs until its
timeout delays only its own notifications: the other receivers' pages leave at once. A row is
marked delivered only after its notifier said so, so a crash mid-send resends it after a restart
(at-least-once to the receiver; the payload's ``dedup_key`` lets the receiver drop the rare
duplicate). Rows are never lost: a pending row stays pending until delivered, rejected (permanent)
or out of attempts. Order: a row waits while an older row of the same alert for the same receiver
is pending, so a resolve never overtakes its page; otherwise a receiver's due rows go oldest first
among those tried equally often (``AlertStore.due``), so a row that keeps failing never blocks the
rows behind it.

A retryable failure backs off the row (``attempts``, ``next_attempt_at``) and holds the whole
receiver for the same delay, which grows with the receiver's run of failures: a receiver that is
down is probed with one notification per backoff instead of being sent every pending row, each
costing a full timeout, and once a probe is delivered the rest of its queue follows at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.exc import OperationalError
from vigil.alerting.metrics import AlertingMetrics
from vigil.alerting.notifiers.base import DeliveryResult, Notifier, deliver
from vigil.alerting.store import AlertStore, Database, OutboxRow

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
        self._lock = threading.Lock()  # one Random shared by every receiver's thread

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        base = min(self.maximum, self.initial * 2.0 ** min(max(attempts - 1, 0), 62))
        with self._lock:
            return base / 2 + self._rng.uniform(0.0, base / 2)

    def exhausted(self, attempts: int) -> bool:
        return self.max_attempts > 0 and attempts >= self.max_attempts


class ReceiverWorker:
    """Delivers one receiver's outbox rows, one at a time, oldest first; runs on its own thread
    (``run``) or, in tests, in the caller's (``drain_once``)."""

    def __init__(
        self,
        name: str,
        notifier: Notifier,
        store: AlertStore,
        clock: Clock,
        metrics: AlertingMetrics,
        backoff: Backoff,
        batch: int,
    ) -> None:
        self.name = name
        self._notifier = notifier
        self._store = store  # this worker's own connection
        self._clock = clock
        self._metrics = metrics
        self._backoff = backoff
        self._batch = batch
        self._failures = 0  # consecutive retryable failures: the receiver's own backoff
        self.held_until = 0.0
        self.wake = threading.Event()

    def drain_once(self, stop: threading.Event | None = None) -> int:
        """Send this receiver's rows that are due now, oldest first, until one fails retryably (the
        receiver is then held); returns the attempts made. Each row is tried at most once per call,
        so a zero backoff cannot spin here."""
        tried: set[int] = set()
        while (stop is None or not stop.is_set()) and self._clock.now() >= self.held_until:
            due = self._store.due(self._clock.now(), self._batch, notifier=self.name)
            rows = [r for r in due if r.id not in tried]
            if not rows:
                break
            for row in rows:
                if (stop is not None and stop.is_set()) or self._clock.now() < self.held_until:
                    break
                tried.add(row.id)
                self._attempt(row)
        return len(tried)

    def run(self, stop: threading.Event, interval: float) -> None:
        """Drain until ``stop`` is set; sleeps until the next row is due, a wake-up, or ``interval``."""
        while not stop.is_set():
            self.wake.clear()
            try:
                self.drain_once(stop)
                wait = self._next_wait(interval)
            except OperationalError as exc:  # locked/busy past the timeout: try again shortly
                log.warning("outbox scan for %s failed, retrying: %s", self.name, exc)
                wait = interval
            self.wake.wait(wait)

    def close(self) -> None:
        self._notifier.close()
        self._store.close()

    def _next_wait(self, interval: float) -> float:
        now = self._clock.now()
        if now < self.held_until:
            return min(interval, self.held_until - now)
        due = self._store.next_due_at(notifier=self.name)
        return interval if due is None else min(interval, max(0.0, due - now))

    def _attempt(self, row: OutboxRow) -> None:
        result = self._send(row)
        attempts = row.attempts + 1
        self._metrics.notifications.labels(row.notifier, result.outcome).inc()
        now = self._clock.now()
        if result.outcome != "retryable":
            self._failures = 0
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
            self._retry_later(row, attempts, result, now)

    def _retry_later(self, row: OutboxRow, attempts: int, result: DeliveryResult, now: float) -> None:
        """Back off the row and hold the receiver, both by the longer of the row's and the receiver's
        run of failures: one probe per backoff while the receiver is down."""
        self._failures += 1
        delay = self._backoff.delay(max(attempts, self._failures))
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, self._backoff.maximum))
        self.held_until = now + delay
        log.warning(
            "notification %d to %s failed (attempt %d), receiver held and row retried in %.1fs: %s",
            row.id,
            row.notifier,
            attempts,
            delay,
            result.reason,
        )
        self._store.reschedule(row, now + delay, result.reason)

    def _send(self, row: OutboxRow) -> DeliveryResult:
        try:
            return deliver(self._notifier, row.payload)
        except Exception as exc:  # a buggy plugin must not stop this receiver's other notifications
            log.exception("notifier %s raised instead of returning a result", row.notifier)
            return DeliveryResult.retryable(f"notifier raised: {exc!r}")


class OutboxDispatcher:
    """The receivers' workers, started and stopped together."""

    def __init__(
        self,
        database: Database | Path,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        metrics: AlertingMetrics,
        backoff: Backoff,
        batch: int = 100,
        interval: float = 0.5,
    ) -> None:
        database = Database.open(database)
        self._store = AlertStore(database)  # for rows no worker owns
        self._clock = clock
        self._metrics = metrics
        self._interval = interval
        self.workers = {
            name: ReceiverWorker(name, notifier, AlertStore(database), clock, metrics, backoff, batch)
            for name, notifier in notifiers.items()
        }
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def wake(self) -> None:
        """Tell idle workers that there is new work (called after the service enqueues)."""
        for worker in self.workers.values():
            worker.wake.set()

    def drain_once(self, stop: threading.Event | None = None) -> int:
        """Every receiver's due rows, one receiver after the other, in the caller's thread (tests)."""
        self._fail_orphans()
        return sum(worker.drain_once(stop) for worker in self.workers.values())

    def start(self) -> None:
        """One daemon thread per receiver."""
        self._fail_orphans()
        for name, worker in self.workers.items():
            thread = threading.Thread(
                target=worker.run, args=(self._stop, self._interval), name=f"alerting-outbox-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def alive(self) -> bool:
        """True unless a started worker thread died."""
        return all(thread.is_alive() for thread in self._threads) or self._stop.is_set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the workers; one blocked in a send is waited for up to ``timeout_s`` (its notifier's
        timeout bounds that), then left as a daemon: its row stays pending and is resent after restart."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if any(thread.is_alive() for thread in self._threads):
            return  # a worker still uses its connection; the process is exiting anyway
        for worker in self.workers.values():
            worker.close()
        self._store.close()

    def _fail_orphans(self) -> None:
        """Rows for a receiver no longer configured can never be sent: fail them, loudly."""
        for row in self._store.orphans(set(self.workers)):
            reason = f"notifier {row.notifier!r} is not configured"
            log.error("notification %d failed permanently: %s", row.id, reason)
            self._metrics.notifications.labels(row.notifier, "permanent").inc()
            self._store.finish(row, "failed", reason, self._clock.now())
