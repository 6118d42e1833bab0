"""Publishes the simulator's output to the bus, in real time or flat out for benchmarks."""

from __future__ import annotations

import logging
import math
import threading

from vigil.collectors.sim.fleet import FleetSimulator, SimOutput

from vigil.bus import Producer
from vigil.clock import Clock
from vigil.codec import encode
from vigil.topics import Topics

log = logging.getLogger(__name__)

MAX_CATCH_UP_TICKS = 10  # after a longer stall, skip ahead rather than publish a burst of stale ticks
_POLL_S = 0.1  # how often a wait checks the stop event


class SimulatorRunner:
    """Tick ``k`` is stamped ``sim.start + k * interval``, so timestamps are regular and reproducible."""

    def __init__(self, sim: FleetSimulator, producer: Producer, topics: Topics, clock: Clock) -> None:
        self.sim = sim
        self.producer = producer
        self.topics = topics
        self.clock = clock
        self.ticks = 0

    def publish(self, out: SimOutput) -> int:
        """Send every event of ``out``; returns the number of telemetry samples sent."""
        samples = 0
        send = self.producer.send
        for batch in out.telemetry:
            send(self.topics.telemetry, encode(batch), key=batch.host.encode())
            samples += batch.sample_count
        for line in out.logs:
            send(self.topics.logs, encode(line), key=line.host.encode())
        for step in out.training:
            send(self.topics.training, encode(step), key=step.job_id.encode())
        for fault in out.faults:
            send(self.topics.groundtruth, encode(fault), key=fault.fault_id.encode())
        return samples

    def run(self, stop: threading.Event, duration_s: float | None = None) -> None:
        """Tick every interval until ``stop`` is set or ``duration_s`` after the simulator's start.

        Started later than one interval after ``sim.start`` (a restart with the first run's start),
        it resumes the schedule (``FleetSimulator.resume``) and ticks on from now.
        """
        interval = self.sim.config.interval
        until = self.sim.start + duration_s if duration_s is not None else None
        self._resume_if_late(interval)
        try:
            while not stop.is_set():
                due = self._slot(self.ticks)
                if until is not None and due > until + 1e-9:
                    break
                if not self._wait_until(due, stop):
                    break
                self._skip_if_stalled(interval)
                self.publish(self._tick())
                self.producer.flush()
        finally:
            self.publish(self.sim.finish(max(self.clock.now(), self._slot(self.ticks - 1))))
            self.producer.flush()

    def _resume_if_late(self, interval: float) -> None:
        now = self.clock.now()
        if self.ticks == 0 and now - self.sim.start > interval:
            log.info("resuming the simulation %.1fs after its start", now - self.sim.start)
            self.publish(self.sim.resume(now))
            self.producer.flush()
            self.ticks = math.ceil((now - self.sim.start) / interval - 1e-9)

    def run_fast(self, n_ticks: int) -> int:
        """``n_ticks`` ticks without sleeping (simulated time runs ahead of the clock); samples sent."""
        samples = 0
        for _ in range(n_ticks):
            samples += self.publish(self._tick())
        self.producer.flush()
        return samples

    def _tick(self) -> SimOutput:
        out = self.sim.tick(self._slot(self.ticks))
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
        if behind > MAX_CATCH_UP_TICKS:
            log.warning("simulator %d ticks behind the clock: skipping ahead", behind)
            self.ticks += behind
