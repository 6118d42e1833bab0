"""The publisher thread's buffer: encoded steps kept until a producer flush confirms them.

A step leaves the outbox only when ``flush()`` returned without error, so a broker that is away, slow
or restarting loses nothing that fits in the buffer. On any failure the producer is thrown away and a
new one is built on the next attempt, and every unconfirmed step is sent again: the old producer may
have delivered some of them before failing, so delivery is at-least-once (a step may arrive twice, in
order within each attempt), which is what every Vigil consumer expects. Building the producer here,
lazily, matters too: kafka-python contacts the broker in its constructor, which must never happen
on the training thread nor make the reporter fail to start while the broker is down.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry

from vigil.bus import Bus, Producer
from vigil.metrics_catalog import counter, gauge

log = logging.getLogger(__name__)


def yield_gil() -> None:
    """Let a thread waiting for the GIL run (``time.sleep`` releases it, even for 0 s).

    The publisher shares the GIL with the training thread. Left alone, a busy publisher keeps it for
    the whole switch interval (5 ms) each time the training thread wants it back, e.g. after every
    torch op; handing it over every few records bounds that stall (``vigil bench reporter`` measures it).
    """
    time.sleep(0)


class ReporterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = counter(registry, "vigil_training_reporter_published_total")
        self.dropped = counter(registry, "vigil_training_reporter_dropped_total")
        self.errors = counter(registry, "vigil_training_reporter_publish_errors_total")
        self.buffered = gauge(registry, "vigil_training_reporter_buffered_steps")


class Outbox:
    def __init__(
        self, bus: Bus, topic: str, key: bytes, capacity: int, metrics: ReporterMetrics, yield_every: int
    ) -> None:
        self._bus = bus
        self._yield_every = yield_every
        self._topic = topic
        self._key = key
        self.capacity = capacity
        self._metrics = metrics
        self._producer: Producer | None = None
        self.pending: list[bytes] = []
        self._sent = 0  # how many of ``pending`` the current producer has been given
        self.confirmed = 0  # steps confirmed since the start

    def room(self) -> int:
        return self.capacity - len(self.pending)

    def add(self, value: bytes) -> None:
        self.pending.append(value)

    def publish(self, flush_timeout_s: float) -> int:
        """Send what the producer has not been given yet, flush, and forget what is confirmed.

        Raises whatever the bus raises (``RetryableError`` for a broker that is away); the caller then
        calls :meth:`reset` and tries again later. Returns the number of steps confirmed.
        """
        if not self.pending:
            return 0
        if self._producer is None:
            self._producer = self._bus.producer()
        send, topic, key = self._producer.send, self._topic, self._key
        for value in self.pending[self._sent :]:
            send(topic, value, key=key)
            self._sent += 1
            if self._yield_every and self._sent % self._yield_every == 0:
                yield_gil()
        self._producer.flush(flush_timeout_s)
        confirmed = len(self.pending)
        self.pending.clear()
        self._sent = 0
        self.confirmed += confirmed
        self._metrics.published.inc(confirmed)
        return confirmed

    def reset(self) -> None:
        """Forget the producer after a failure: the next publish builds a new one and resends everything."""
        producer, self._producer, self._sent = self._producer, None, 0
        if producer is not None:
            try:
                producer.close()
            except Exception as exc:  # noqa: BLE001 - a broken producer may fail to close in any way; it is dropped
                log.debug("closing a failed producer: %s", exc)

    def close(self) -> None:
        self.reset()
