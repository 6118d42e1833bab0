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
A service with a second dependency (the Influx sink's store) keeps a second ``Outage`` about it
(a ``Dependency``: ``vigil_sink_store_up``, ...), so a store outage never reads as a broker outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Dependency:
    """What an ``Outage`` is about: its metrics (entries of ``vigil.metrics_catalog``), the prefix of its
    health keys (``<health>_ok``, ``<health>_down_s``, ``<health>_last_error``) and its name in the log."""

    up: str
    outages: str
    retries: str
    health: str
    what: str


BROKER = Dependency("vigil_bus_up", "vigil_bus_outages_total", "vigil_bus_retries_total", "bus", "broker")


class Outage:
    """Bounded exponential backoff for one service's work on a dependency (the broker unless told
    otherwise), logged once per episode.

    An episode starts with the first failure after a success and ends with the next success.
    """

    def __init__(
        self,
        service: str,
        clock: Clock,
        registry: CollectorRegistry,
        initial_s: float = 0.5,
        max_s: float = 15.0,
        dependency: Dependency = BROKER,
    ) -> None:
        self.service = service
        self._clock = clock
        self._initial, self._max = initial_s, max_s
        self._delay = initial_s
        self._on = dependency
        self.down_since: float | None = None  # monotonic
        self.last_error = ""
        self.up = gauge(registry, dependency.up)
        self.up.set(1)
        self.outages = counter(registry, dependency.outages)
        self.retries = counter(registry, dependency.retries)

    def failed(self, exc: BaseException) -> float:
        """Count the failure; returns how long to wait before the next attempt."""
        self.retries.inc()
        self.last_error = str(exc)
        if self.down_since is None:
            self.down_since = self._clock.monotonic()
            self._delay = self._initial
            self.outages.inc()
            self.up.set(0)
            what = self._on.what
            log.warning("%s: %s call failed, retrying with backoff until it answers: %s", self.service, what, exc)
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
        log.info("%s: %s answers again after %.1f s", self.service, self._on.what, lasted)

    def health(self) -> dict[str, Any]:
        down = None if self.down_since is None else round(self._clock.monotonic() - self.down_since, 1)
        key, error = self._on.health, self.last_error if down else ""
        return {f"{key}_ok": down is None, f"{key}_down_s": down, f"{key}_last_error": error}


def run_with_recovery(
    stop: threading.Event,
    step: Callable[[], object],
    recover: Callable[[], None],
    outage: Outage,
    outage_for: Callable[[RetryableError], Outage] | None = None,
) -> None:
    """Call ``step`` until ``stop`` is set. After a ``RetryableError`` wait (``outage``'s backoff), then
    ``recover`` (rebuild, rewind) before the next step; a recovery that fails is retried the same way.

    ``outage_for`` picks the episode a failure belongs to when a service has more than one dependency
    (the sink's store); such an episode is ended by whoever sees that dependency answer again, since a
    step that did not call it proves nothing. A step without error ends ``outage``'s."""
    broken = False
    while not stop.is_set():
        try:
            if broken:
                recover()
                broken = False
            step()
        except RetryableError as exc:
            broken = True
            charged = outage if outage_for is None else outage_for(exc)
            stop.wait(charged.failed(exc))
        else:
            outage.succeeded()
