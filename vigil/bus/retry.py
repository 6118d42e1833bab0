"""Surviving a broker that goes away: a producer that can be rebuilt, and a retry loop with bounded backoff.

kafka-python can leave a producer unusable after an error it will not retry (a fatal idempotence
error, a batch that expired while the broker was away): the futures fail and later sends may raise.
The only safe move is a new producer and a resend of everything not acknowledged, so every service
treats any failed send or flush the same way: ``RenewableProducer.renew()``, then go back to the last
point the broker confirmed (the simulator: the tick it could not flush; a consumer: its committed
offsets, see ``checkpoint.py``) and carry on from there.

``Outage`` turns the failures into one episode per outage: a warning when it starts, one info line
with its length when it ends, bounded exponential backoff in between, and self-metrics
(``vigil_bus_up``, ``vigil_bus_outages_total``, ``vigil_bus_retries_total``) plus a health entry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from vigil.bus.base import Header, Producer
from vigil.clock import Clock
from vigil.errors import RetryableError
from vigil.metrics_catalog import counter, gauge

log = logging.getLogger(__name__)


class RenewableProducer:
    """A ``Producer`` built on first use and thrown away by ``renew()``; the next send builds a fresh one.

    Building it may raise ``RetryableError`` (no broker to bootstrap from), like any send. ``failed`` is
    true from a send or flush that raised until ``renew()``: a later flush that passes proves nothing
    about the records of the failed one, so nothing derived from them may be committed meanwhile.
    """

    def __init__(self, factory: Callable[[], Producer], registry: CollectorRegistry | None = None) -> None:
        self._factory = factory
        self._producer: Producer | None = None
        self.failed = False
        self.renewals = counter(registry, "vigil_producer_renewals_total")

    def _current(self) -> Producer:
        if self._producer is None:
            self._producer = self._factory()
        return self._producer

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Sequence[Header] = ()) -> None:
        try:
            self._current().send(topic, value, key=key, headers=headers)
        except BaseException:
            self.failed = True
            raise

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._current().flush(timeout_s)
        except BaseException:
            self.failed = True
            raise

    def renew(self, close_timeout_s: float = 1.0) -> None:
        """Drop the producer (what it has not delivered is abandoned: the caller sends it again)."""
        producer, self._producer = self._producer, None
        self.failed = False
        if producer is None:
            return
        self.renewals.inc()
        try:
            producer.close(close_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a broken producer may fail to close in any way; it is dropped
            log.debug("closing a failed producer: %s", exc)

    def close(self, timeout_s: float = 5.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout_s)


class Outage:
    """Bounded exponential backoff for one service's broker work, logged once per episode.

    An episode starts with the first failure after a success and ends with the next success.
    """

    def __init__(
        self,
        service: str,
        clock: Clock,
        registry: CollectorRegistry,
        initial_s: float = 0.5,
        max_s: float = 15.0,
    ) -> None:
        self.service = service
        self._clock = clock
        self._initial, self._max = initial_s, max_s
        self._delay = initial_s
        self.down_since: float | None = None  # monotonic
        self.last_error = ""
        self.up = gauge(registry, "vigil_bus_up")
        self.up.set(1)
        self.outages = counter(registry, "vigil_bus_outages_total")
        self.retries = counter(registry, "vigil_bus_retries_total")

    def failed(self, exc: BaseException) -> float:
        """Count the failure; returns how long to wait before the next attempt."""
        self.retries.inc()
        self.last_error = str(exc)
        if self.down_since is None:
            self.down_since = self._clock.monotonic()
            self._delay = self._initial
            self.outages.inc()
            self.up.set(0)
            log.warning("%s: broker call failed, retrying with backoff until it answers: %s", self.service, exc)
        else:
            log.debug("%s: still failing: %s", self.service, exc)
        delay, self._delay = self._delay, min(self._delay * 2, self._max)
        return delay

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        lasted = self._clock.monotonic() - self.down_since
        self.down_since = None
        self.up.set(1)
        log.info("%s: broker answers again after %.1f s", self.service, lasted)

    def health(self) -> dict[str, Any]:
        down = None if self.down_since is None else round(self._clock.monotonic() - self.down_since, 1)
        return {"bus_ok": down is None, "bus_down_s": down, "bus_last_error": self.last_error if down else ""}


def run_with_recovery(
    stop: threading.Event,
    step: Callable[[], object],
    recover: Callable[[], None],
    outage: Outage,
) -> None:
    """Call ``step`` until ``stop`` is set. After a ``RetryableError`` wait (``outage``'s backoff), then
    ``recover`` (rebuild, rewind) before the next step; a recovery that fails is retried the same way."""
    broken = False
    while not stop.is_set():
        try:
            if broken:
                recover()
                broken = False
            step()
        except RetryableError as exc:
            broken = True
            stop.wait(outage.failed(exc))
        else:
            outage.succeeded()
