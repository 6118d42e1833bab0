"""Publishes the simulator's output to the bus, in real time or flat out for benchmarks.

A tick counts as published once the producer's flush confirmed it. When a send or flush fails (the
broker away, or a producer kafka-python left unusable), the producer is thrown away, and the same
tick is sent again on a new one after a bounded backoff, until the broker takes it. The ticks the
clock passed meanwhile are then simulated and published in a burst (up to ``MAX_OUTAGE_TICKS``), as
a fleet's agents drain what they buffered, so a broker restart leaves no hole in the telemetry.

With an :class:`~vigil.collectors.sim.inbox.ActionInbox`, the remediation actions that arrived are
applied at each tick (``FleetSimulator.tick(now, requests)``), their reports published on the
action-reports topic (key: the request id) with the tick, and undecodable records dead-lettered;
the actions' offsets are committed once that tick is confirmed.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from vigil.collectors.sim.fleet import FleetSimulator, SimOutput
from vigil.collectors.sim.inbox import ActionInbox, Taken

from vigil.bus import Producer
from vigil.bus.base import DeadLetters
from vigil.bus.retry import Outage, RenewableProducer
from vigil.clock import Clock
from vigil.codec import encode
from vigil.errors import RetryableError
from vigil.topics import Topics

log = logging.getLogger(__name__)

MAX_CATCH_UP_TICKS = 10  # after a longer stall of this process, skip ahead rather than publish stale ticks
MAX_OUTAGE_TICKS = 900  # after a broker outage, catch up on this many ticks at most (15 min at 1 s)
FLUSH_TIMEOUT_S = 10.0  # a tick not confirmed within this is sent again on a new producer
_POLL_S = 0.1  # how often a wait checks the stop event


class SimulatorRunner:
    """Tick ``k`` is stamped ``sim.start + k * interval``, so timestamps are regular and reproducible.

    ``connect`` builds a producer (``bus.producer``); a new one replaces it after a failure.
    """

    def __init__(
        self,
        sim: FleetSimulator,
        connect: Callable[[], Producer],
        topics: Topics,
        clock: Clock,
        registry: CollectorRegistry | None = None,
        inbox: ActionInbox | None = None,
    ) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.sim = sim
        self.producer = RenewableProducer(connect, registry)
        self.topics = topics
        self.clock = clock
        self.outage = Outage("sim", clock, registry)
        self.inbox = inbox
        self.dead_letters = DeadLetters(self.producer, registry)
        self.ticks = 0
        self._after_outage = False

    def publish(self, out: SimOutput) -> int:
        """Send every event of ``out``; returns the number of telemetry samples sent."""
        samples = 0
        send = self.producer.send
        for batch in out.telemetry:
            send(self.topics.telemetry, encode(batch), key=batch.host.encode())
            samples += batch.sample_count
        for line in out.logs:
            send(self.topics.logs, encode(line), key=line.host.encode())
        for steps in out.training:
            send(self.topics.training, encode(steps), key=steps.job_id.encode())
        for fault in out.faults:
            send(self.topics.groundtruth, encode(fault), key=fault.fault_id.encode())
        for report in out.reports:
            send(self.topics.name("action_reports"), encode(report), key=report.request_id.encode())
        return samples

    def run(self, stop: threading.Event, duration_s: float | None = None) -> None:
        """Tick every interval until ``stop`` is set or ``duration_s`` after the simulator's start.

        Started later than one interval after ``sim.start`` (a restart with the first run's start),
        it resumes the schedule (``FleetSimulator.resume``) and ticks on from now.
        """
        interval = self.sim.config.interval
        until = self.sim.start + duration_s if duration_s is not None else None
        try:
            if not self._resume_if_late(interval, stop):
                return
            while not stop.is_set():
                due = self._slot(self.ticks)
                if until is not None and due > until + 1e-9:
                    break
                if not self._wait_until(due, stop):
                    break
                self._skip_if_stalled(interval)
                taken = self.inbox.take() if self.inbox is not None else Taken()
                if not self._deliver(self._tick(taken), stop, taken=taken):
                    break
                if self.inbox is not None:
                    self.inbox.delivered(taken)
        finally:
            self._deliver(self.sim.finish(max(self.clock.now(), self._slot(self.ticks - 1))), stop, retry=False)

    def _deliver(self, out: SimOutput, stop: threading.Event, retry: bool = True, taken: Taken | None = None) -> bool:
        """Publish ``out`` (and dead-letter the rejects ``taken`` holds) and flush, again on a new producer
        after each failure; False if stopped first."""
        while True:
            try:
                self.publish(out)
                for reject in taken.rejects if taken is not None else ():
                    self.dead_letters.send(reject.record, reject.reason, reject.detail)
                self.producer.flush(FLUSH_TIMEOUT_S)
            except RetryableError as exc:
                self.producer.renew()
                delay = self.outage.failed(exc)
                self._after_outage = True
                if not retry or not self._wait_until(self.clock.now() + delay, stop):
                    log.warning("simulator stopping with a tick unpublished: %s", exc)
                    return False
            else:
                self.outage.succeeded()
                return True

    def _resume_if_late(self, interval: float, stop: threading.Event) -> bool:
        """False if stopped before the resumed state was published."""
        now = self.clock.now()
        if self.ticks == 0 and now - self.sim.start > interval:
            log.info("resuming the simulation %.1fs after its start", now - self.sim.start)
            self.ticks = math.ceil((now - self.sim.start) / interval - 1e-9)
            return self._deliver(self.sim.resume(now), stop)
        return True

    def run_fast(self, n_ticks: int) -> int:
        """``n_ticks`` ticks without sleeping (simulated time runs ahead of the clock); samples sent."""
        samples = 0
        for _ in range(n_ticks):
            samples += self.publish(self._tick())
        self.producer.flush()
        return samples

    def _tick(self, taken: Taken | None = None) -> SimOutput:
        out = self.sim.tick(self._slot(self.ticks), taken.requests if taken is not None else ())
        self.ticks += 1
        return out

    def _slot(self, k: int) -> float:
        return self.sim.start + max(k, 0) * self.sim.config.interval

    def _wait_until(self, due: float, stop: threading.Event) -> bool:
        while not stop.is_set():
            remaining = due - self.clock.now()
            if remaining <= 0:
                return True
            self.clock.sleep(min(remaining, _POLL_S))
        return False

    def _skip_if_stalled(self, interval: float) -> None:
        behind = int((self.clock.now() - self._slot(self.ticks)) / interval)
        limit = MAX_OUTAGE_TICKS if self._after_outage else MAX_CATCH_UP_TICKS
        if behind <= 0:
            self._after_outage = False
        elif behind > limit:
            log.warning("simulator %d ticks behind the clock: skipping ahead", behind)
            self.ticks += behind
            self._after_outage = False
