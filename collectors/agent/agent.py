"""The agent: ticks, runs the collectors that are due, batches, buffers and delivers.

Threads: the scheduler (the caller of ``run``) owns every decision and all assembly; one worker
thread per collector only runs ``collect()``; one delivery thread talks to the broker; the
self-metrics server answers ``/metrics`` and ``/healthz``. The scheduler never blocks on a
collector for longer than ``batch_wait`` per tick, nor on the broker at all (it only appends to the
buffer), so a hung source or a dead broker cannot stop the others.

Each tick: dispatch the due collectors, wait up to ``batch_wait`` for them, merge what came back
into one ``TelemetryBatch`` stamped with the tick, and append it to the buffer (``telemetry``,
key = host). A run that answers later but within its timeout is published as its own batch,
stamped with the tick it was started for; a run past its timeout is abandoned (error
``timeout``) and its collector is skipped until it returns. LogEvents go to ``logs`` as they come.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from vigil.collectors.agent.batching import BatchAssembler
from vigil.collectors.agent.buffer import DeliveryBuffer
from vigil.collectors.agent.config import AgentConfig
from vigil.collectors.agent.delivery import Deliverer, ProducerFactory
from vigil.collectors.agent.metrics import AgentMetrics
from vigil.collectors.agent.schedule import Schedule, first_tick
from vigil.collectors.agent.worker import CollectorWorker, CollectResult
from vigil.collectors.base import Collector

from vigil.clock import Clock, SystemClock
from vigil.codec import encode
from vigil.events import LogEvent, TelemetryBatch, TrainingStep, TrainingStepBatch
from vigil.selfmetrics import SelfMetricsServer
from vigil.topics import Topics

log = logging.getLogger(__name__)

MAX_BEHIND_TICKS = 5  # a scheduler this far behind the clock skips ahead instead of bursting
_POLL_S = 0.25  # how often an idle scheduler checks the stop event and the timeouts


@dataclass
class OnceResult:
    """What one tick would publish (``vigil agent --once``)."""

    batch: TelemetryBatch | None
    logs: list[LogEvent | TrainingStep | TrainingStepBatch] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (collector, error, detail)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        collectors: Mapping[str, Collector],
        *,
        cluster: str,
        topics: Topics,
        registry: CollectorRegistry,
        spill_dir: Path | None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.settings = {name: config.collectors[name] for name in sorted(collectors)}
        self.topics = topics
        self.spill_dir = spill_dir
        self.clock = clock or SystemClock()
        self.metrics = AgentMetrics(registry)
        self.assembler = BatchAssembler(config.host, cluster)
        self._results: queue.SimpleQueue[CollectResult] = queue.SimpleQueue()
        self.workers = {name: CollectorWorker(name, c, self._results) for name, c in sorted(collectors.items())}
        self._key = config.host.encode()
        self._last_success: dict[str, float] = {}
        self._started = time.monotonic()
        self._last_tick = self._started
        self.buffer: DeliveryBuffer | None = None
        self.deliverer: Deliverer | None = None
        self.server: SelfMetricsServer | None = None

    # ------------------------------------------------------------------ running
    def run(self, connect: ProducerFactory, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, then deliver what it can within the shutdown timeout and spill
        the rest."""
        self.buffer = DeliveryBuffer(self.config.buffer, self.spill_dir, self.metrics.record_drop)
        self.metrics.watch_buffer(self.buffer.stats)
        streams = {"telemetry": self.topics.telemetry, "logs": self.topics.logs, "training": self.topics.training}
        self.deliverer = Deliverer(
            self.buffer, connect, streams, self.metrics, self.config.reconnect_backoff_max
        ).start()
        self._start_server()
        for worker in self.workers.values():
            worker.start()
        try:
            self._loop(stop)
        finally:
            self.shutdown()

    def _loop(self, stop: threading.Event) -> None:
        tick = self.config.tick
        start, k, schedule = self._align()
        while not stop.is_set():
            slot = start + k * tick
            if not self._idle_until(slot, stop):
                return
            ahead = slot - self.clock.now()
            if ahead > 2 * tick:  # the wall clock stepped back (NTP): waiting for the old slot could take hours
                log.warning("wall clock went back %.1fs: re-aligning the ticks", ahead)
                start, k, schedule = self._align()
                continue
            behind = int(-ahead / tick)
            if behind > MAX_BEHIND_TICKS:  # stalled, or the clock stepped forward
                log.warning("scheduler %d ticks behind the clock: skipping ahead", behind)
                k += behind
                continue
            try:
                self._tick(slot, schedule)
            except Exception:  # a bug in one tick must not end the agent: log it, tick again
                log.exception("tick %s failed", slot)
            k += 1

    def _align(self) -> tuple[float, int, Schedule]:
        start = first_tick(self.clock.now(), self.config.tick)
        return start, 0, Schedule(self.settings, start, random.Random())

    def _idle_until(self, when: float, stop: threading.Event) -> bool:
        """Until ``when`` (or the clock stepping back), handle late results and timeouts; False when stopped."""
        while not stop.is_set():
            remaining = when - self.clock.now()
            if remaining <= 0 or remaining > 2 * self.config.tick:
                return True
            self._drain_results(min(remaining, _POLL_S), current=None)
            self._check_timeouts()
            if self.buffer is not None:
                self.buffer.spill_overdue()  # unacknowledged records older than spill_after go to disk
        return False

    def _tick(self, slot: float, schedule: Schedule) -> None:
        started = [name for name in schedule.due(slot) if self.workers[name].dispatch(slot)]
        pending = set(started)
        deadline = time.monotonic() + self.config.wait
        results: list[CollectResult] = []
        while pending and (left := deadline - time.monotonic()) > 0:
            results += self._drain_results(left, current=slot, first_only=True)
            pending -= {r.collector for r in results}
        self._publish_batch(slot, results)
        self._check_timeouts()
        self._last_tick = time.monotonic()

    def _drain_results(self, timeout_s: float, current: float | None, first_only: bool = False) -> list[CollectResult]:
        """Accept results for up to ``timeout_s``: those of the ``current`` tick are returned, late ones
        are published on their own."""
        out: list[CollectResult] = []
        try:
            result = self._results.get(timeout=timeout_s)
        except queue.Empty:
            return out
        while True:
            if self._accept(result):
                if result.tick == current:
                    out.append(result)
                else:
                    self._publish_batch(result.tick, [result])
            if first_only:
                return out
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return out

    def _accept(self, result: CollectResult) -> bool:
        """Count and log the run; False when it had been abandoned (its data is discarded)."""
        worker = self.workers[result.collector]
        abandoned = worker.timed_out
        worker.done()
        if abandoned:
            return False
        name = result.collector
        self.metrics.collect_seconds.labels(name).observe(result.seconds)
        if result.series:
            self.metrics.samples.labels(name).inc(len(result.series))
        for problem in result.problems:
            self.metrics.collector_error(name, problem.error, problem.detail)
        if result.exception is not None:
            exc = result.exception
            self.metrics.collector_error(name, type(exc).__name__, str(exc), exc)
        if result.succeeded:
            now = self.clock.now()
            self._last_success[name] = now
            self.metrics.last_success.labels(name).set(now)
        for event in result.logs:
            self._publish_log(name, event)
        return True

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for name, worker in self.workers.items():
            if worker.busy_since is None or worker.timed_out:
                continue
            timeout = self.settings[name].run_timeout
            if now - worker.busy_since > timeout:
                worker.timed_out = True
                self.metrics.collector_error(name, "timeout", f"collect() still running after {timeout:g}s")

    # ------------------------------------------------------------------ publishing
    def _publish_batch(self, tick: float, results: list[CollectResult]) -> None:
        batch, problems = self.assembler.assemble(tick, results)
        for name, problem in problems:
            self.metrics.collector_error(name, problem.error, problem.detail)
        if batch is not None and self.buffer is not None:
            self.buffer.append("telemetry", self._key, encode(batch), batch.sample_count)

    def _publish_log(self, collector: str, event: LogEvent | TrainingStep | TrainingStepBatch) -> None:
        """A discrete event: a LogEvent to ``logs`` keyed by host, training steps (the scrape
        collector's) to ``training`` keyed by job, as the training SDK publishes them."""
        try:
            value = encode(event)
        except (TypeError, ValueError, OverflowError) as exc:
            self.metrics.collector_error(collector, "bad_log_event", str(exc))
            return
        if self.buffer is not None:
            if isinstance(event, TrainingStep | TrainingStepBatch):
                self.buffer.append("training", event.job_id.encode(), value)
            else:
                self.buffer.append("logs", event.host.encode(), value)

    # ------------------------------------------------------------------ one tick for operators
    def once(self) -> OnceResult:
        """Run every collector once, now, and return what would be published (nothing is sent)."""
        tick = self.clock.now()
        logs: list[LogEvent | TrainingStep | TrainingStepBatch] = []
        errors: list[tuple[str, str, str]] = []
        for worker in self.workers.values():
            worker.start()
            worker.dispatch(tick)
        deadline = time.monotonic() + max((s.run_timeout for s in self.settings.values()), default=0.0)
        results: list[CollectResult] = []
        while len(results) < len(self.workers) and (left := deadline - time.monotonic()) > 0:
            try:
                result = self._results.get(timeout=left)
            except queue.Empty:
                break
            results.append(result)
            logs += result.logs
            errors += [(result.collector, p.error, p.detail) for p in result.problems]
            if result.exception is not None:
                errors.append((result.collector, type(result.exception).__name__, str(result.exception)))
        for name in sorted(set(self.workers) - {r.collector for r in results}):
            errors.append((name, "timeout", f"no answer within {self.settings[name].run_timeout:g}s"))
        batch, problems = self.assembler.assemble(tick, results)
        errors += [(name, p.error, p.detail) for name, p in problems]
        for worker in self.workers.values():
            worker.stop()
        return OnceResult(batch, logs, errors)

    # ------------------------------------------------------------------ shutdown and health
    def shutdown(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        if self.deliverer is not None:
            timeout = self.config.shutdown_timeout
            if not self.deliverer.drain(timeout):
                log.warning("broker did not take everything within %gs; spilling the rest", timeout)
            self.deliverer.stop()
        if self.buffer is not None:
            self.buffer.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _start_server(self) -> None:
        if self.config.metrics_port < 0:
            return
        self.server = SelfMetricsServer(
            self.metrics.registry, self.health, self.config.metrics_address, self.config.metrics_port
        ).start()
        log.info("agent self-metrics and /healthz on %s:%d", self.config.metrics_address, self.server.port)

    def health(self) -> dict[str, Any]:
        """``ok`` is False (HTTP 503) when the scheduler has not ticked for 3 ticks (10 s at least),
        when the delivery thread died, or when no collector has succeeded within 3 intervals plus its
        timeout; a single stale collector is reported but leaves the agent healthy (restarting the
        agent would not fix its source)."""
        now, mono = self.clock.now(), time.monotonic()
        collectors: dict[str, dict[str, Any]] = {}
        for name, spec in self.settings.items():
            last = self._last_success.get(name)
            limit = 3 * spec.interval + spec.run_timeout
            busy = self.workers[name].busy_since
            collectors[name] = {
                "last_success": last,
                "age_s": round(now - last, 3) if last is not None else None,
                "interval_s": spec.interval,
                "running_s": round(mono - busy, 3) if busy is not None else None,
                "stale": (now - last if last is not None else mono - self._started) > limit,
            }
        problems = []
        if mono - self._last_tick > max(3 * self.config.tick, 10.0):
            problems.append(f"scheduler has not ticked for {mono - self._last_tick:.0f}s")
        if self.deliverer is not None and not self.deliverer.alive:
            problems.append("delivery thread is not running")
        if collectors and all(c["stale"] for c in collectors.values()):
            problems.append("no collector succeeded recently")
        deliverer = self.deliverer
        return {
            "ok": not problems,
            "problems": problems,
            "host": self.config.host,
            "collectors": collectors,
            "buffer": self.buffer.stats() if self.buffer is not None else {},
            "broker": {
                "connected": deliverer.connected if deliverer else False,
                "last_ack": deliverer.last_ack if deliverer else None,
            },
        }
