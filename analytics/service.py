"""The analytics consumer: telemetry, logs and training in; Detections out; state snapshotted.

It runs the kernel's commit protocol (``vigil.bus.checkpoint``): every record is handled in
isolation (one that fails to decode or to score goes to ``<topic>.dlq``), and every
``snapshot_every``, on revoke and on close, the protocol's steps 3-5 are, in this order (the same
numbered steps are in ARCHITECTURE.md "Analytics commit order"):

    1. publish the detections produced from the consumed records and flush the producer;
    2. snapshot detector state for the partitions (versioned bytes, atomic file replace), each
       snapshot carrying the next offset it reflects;
    3. commit the consumed offsets (never backwards).

A crash between steps replays, never loses: after 1 the detections are out (alerting dedups a
replay); after 2 the restored state already reflects records up to its offset, and those records
are skipped when they are delivered again, so nothing is learned twice. A failed step (the broker
away, a producer left unusable) rewinds to the last checkpoint the same way: the producer is
rebuilt, the snapshots of step 2 reloaded and the consumer moved back to the committed offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.engine import Engine
from vigil.analytics.export import REFRESH_S, FleetExport
from vigil.analytics.state import SnapshotStore

from vigil.bus import Bus, Record, TopicPartition
from vigil.bus.checkpoint import Checkpoint
from vigil.bus.retry import Outage, run_with_recovery
from vigil.clock import Clock
from vigil.codec import decode, encode
from vigil.errors import RetryableError, UnexpectedEvent
from vigil.events import Detection, LogEvent, Prediction, TelemetryBatch, TrainingStep
from vigil.metrics_catalog import counter, gauge, histogram
from vigil.topics import Topics
from vigil.xid import XidCatalog

log = logging.getLogger(__name__)
EXPECTED: dict[str, type[Any]] = {"telemetry": TelemetryBatch, "logs": LogEvent, "training": TrainingStep}


class AnalyticsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = counter(registry, "vigil_analytics_records_total")
        self.samples = counter(registry, "vigil_analytics_samples_total")
        self.samples_dropped = counter(registry, "vigil_analytics_samples_dropped_total")
        self.series = gauge(registry, "vigil_analytics_series")
        self.detections = counter(registry, "vigil_analytics_detections_total")
        self.predictions = counter(registry, "vigil_analytics_predictions_total")
        self.snapshots_discarded = counter(registry, "vigil_analytics_snapshots_discarded_total")
        self.poll_seconds = histogram(registry, "vigil_analytics_poll_seconds")
        self.snapshot_age = gauge(registry, "vigil_analytics_snapshot_age_seconds")
        self.detection_delay = histogram(registry, "vigil_detection_delay_seconds")


class AnalyticsService:
    def __init__(
        self,
        bus: Bus,
        topics: Topics,
        config: AnalyticsConfig,
        clock: Clock,
        registry: CollectorRegistry,
        state_dir: Path,
    ) -> None:
        self.config, self.topics, self.clock = config, topics, clock
        self.metrics = AnalyticsMetrics(registry)
        self.engine = Engine(config, XidCatalog.load())
        self.export = FleetExport(config.truthfulness.forget_after, config.hang.forget_after)
        registry.register(self.export)
        self._exported_at = float("-inf")
        self._saved_at = clock.monotonic()
        self.metrics.snapshot_age.set_function(lambda: self.clock.monotonic() - self._saved_at)
        self.store = SnapshotStore(state_dir)
        self.streams = {topics.telemetry: "telemetry", topics.logs: "logs", topics.training: "training"}
        self._skip_below: dict[TopicPartition, int] = {}  # records a restored snapshot already reflects
        self._unverified: set[TopicPartition] = set()  # restored, not yet checked against committed offsets
        self._last_checkpoint = clock.monotonic()
        self._last_tick = clock.monotonic()
        self._processed = 0
        self._closed = False
        # The event detectors' clock (hang, XID quiet periods) is event time: the newest timestamp
        # consumed, advanced by wall time only while the consumer is caught up. A consumer that
        # stalls or replays a backlog therefore never mistakes its own delay for a silent job.
        self._watermark: float | None = None
        self._last_record_at = clock.monotonic()
        self._caught_up = False
        self.outage = Outage("analytics", clock, registry)
        # on_assign may run inside the consumer's constructor: everything it touches exists before this
        self.commits = Checkpoint(bus, list(self.streams), config.group, self, registry)
        self.watch = self.commits.watch(clock, config.health, config.poll_timeout)
        self.producer = self.commits.producer
        self.consumer = self.commits.consumer

    # -- the loop
    def step(self, timeout_s: float = 1.0) -> int:
        """One poll: decode, detect, publish; the commit protocol when ``snapshot_every`` elapsed."""
        records = self.commits.poll(timeout_s, self.config.max_poll_records)
        if self._unverified:
            self._verify_restored()
        started = time.perf_counter()
        found = self._process(records)
        # An empty poll while the broker is away is not "caught up": the time it is away must not age
        # the jobs, so the idle clock starts again once it answers.
        connected = self.outage.down_since is None and self.consumer.connected()
        self._caught_up = not records and connected
        if records or not connected:
            self._last_record_at = self.clock.monotonic()
        now = self.event_now()
        if now is not None and self.clock.monotonic() - self._last_tick >= self.config.tick_every:
            self._last_tick = self.clock.monotonic()
            found += self.engine.tick(now)
            self._publish_predictions(self.engine.predictions(now))
        self._publish(found)
        if records:
            self.metrics.poll_seconds.observe(time.perf_counter() - started)
        if self.clock.monotonic() - self._exported_at >= REFRESH_S:
            self._exported_at = self.clock.monotonic()
            self._refresh_export(now)
        if self.clock.monotonic() - self._last_checkpoint >= self.config.snapshot_every:
            self.checkpoint()
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop``; a failed step (broker away, producer broken) backs off, rewinds to the last
        checkpoint and carries on."""
        try:
            run_with_recovery(stop, lambda: self.step(self.config.poll_timeout), self.rewind, self.outage)
        finally:
            self.close()

    def rewind(self) -> None:
        """Back to the last checkpoint: a new producer, the snapshots reloaded, the committed offsets."""
        self.commits.rewind()
        # The wall time the broker was away is not idle time of the jobs: event time resumes from here.
        self._caught_up = False
        self._last_record_at = self._last_checkpoint = self.clock.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.commits.close(commit=self.outage.down_since is None)

    def health(self) -> dict[str, object]:
        """``ok`` false once closed, when polling stalled or the lag keeps growing (``vigil.bus.watch``)."""
        consumer = self.watch.health(outage=self.outage.down_since is not None)
        return {
            "service": "analytics",
            **consumer,
            "ok": not self._closed and bool(consumer["ok"]),
            "assigned": sorted(f"{tp.topic}-{tp.partition}" for tp in self.consumer.assignment()),
            "records": self._processed,
            "series": int(self.engine.slots.size),
            **self.outage.health(),
        }

    # -- commit protocol (steps 1-3 above; the kernel's Checkpoint runs them)
    def checkpoint(self, tps: Iterable[TopicPartition] | None = None) -> None:
        self.commits.commit(tps)
        self._last_checkpoint = self.clock.monotonic()

    def save(self, tps: set[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None:
        """Step 2: snapshot detector state for the partitions, with the offset each snapshot reflects."""
        for tp in sorted(tps):
            stream = self.streams.get(tp.topic)
            if stream is not None:
                body = self.engine.snapshot(tp, stream)
                body["offset"] = offsets.get(tp, self._skip_below.get(tp, 0))
                self.store.save(tp, body)
        self._saved_at = self.clock.monotonic()

    def assigned(self, tps: set[TopicPartition]) -> None:
        for tp in sorted(tps):
            stream = self.streams.get(tp.topic)
            body = self.store.load(tp) if stream else None
            if stream and body is not None:
                self.engine.restore(tp, stream, body)
                self._skip_below[tp] = int(body.get("offset", 0))
                self._unverified.add(tp)
                log.info("restored %s-%d warm (offset %s)", tp.topic, tp.partition, body.get("offset"))

    def _verify_restored(self) -> None:
        """Discard a snapshot the group never committed past: it describes another log (a fresh
        broker, a recreated topic), and trusting its offset would skip records never seen.

        The commit order makes this safe: a snapshot is written before its offsets are committed,
        so a genuine snapshot beyond offset 0 always has a committed offset. (Tansu under-reports a
        partition's end offset, so the log end cannot serve as the check.)
        """
        for tp in sorted(self._unverified):
            stream = self.streams.get(tp.topic)
            offset = self._skip_below.get(tp, 0)
            if stream is None or offset == 0 or self.consumer.committed(tp) is not None:
                self._unverified.discard(tp)
                continue
            log.warning(
                "snapshot of %s-%d (offset %d) has no committed offset: starting cold", tp.topic, tp.partition, offset
            )
            self.metrics.snapshots_discarded.labels(tp.topic).inc()
            self._unverified.discard(tp)
            self._skip_below.pop(tp, None)
            self.engine.drop(tp, stream)

    def revoked(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            stream = self.streams.get(tp.topic)
            if stream:
                self.engine.drop(tp, stream)
            self._skip_below.pop(tp, None)
            self._unverified.discard(tp)

    # -- records
    def event_now(self) -> float | None:
        """Event time now: the newest event timestamp, plus the idle time once caught up."""
        if self._watermark is None:
            return None
        idle = self.clock.monotonic() - self._last_record_at if self._caught_up else 0.0
        return self._watermark + idle

    def _advance(self, ts: float) -> float:
        self._watermark = ts if self._watermark is None else max(self._watermark, ts)
        return self._watermark

    def _process(self, records: list[Record]) -> list[Detection]:
        telemetry: list[tuple[Record, TelemetryBatch]] = []
        found: list[Detection] = []
        for record in records:
            self.commits.track(record)
            if record.offset < self._skip_below.get(record.tp, 0):
                continue
            self.metrics.records.labels(record.topic).inc()
            event = self.commits.guard(record, self._decode)
            if isinstance(event, TelemetryBatch):
                telemetry.append((record, event))
            elif event is not None:
                found += self.commits.guard(record, partial(self._observe_event, event=event)) or []
        if telemetry:
            found += self._observe_telemetry(telemetry)
        self._processed += len(records)
        return found

    def _decode(self, record: Record) -> Any:
        event = decode(record.value)
        expected = EXPECTED.get(self.streams.get(record.topic, ""))
        if expected is None or not isinstance(event, expected):
            raise UnexpectedEvent(f"{type(event).__name__} on {record.topic}")
        return event

    def _observe_event(self, record: Record, event: LogEvent | TrainingStep) -> list[Detection]:
        now = event.ts if self._watermark is None else max(self._watermark, event.ts)
        found = self.engine.observe_event(self.streams[record.topic], event, self.engine.pid(record.tp), now)
        self._advance(event.ts)  # only once handled: a record that fails moves no clock
        if isinstance(event, TrainingStep):
            self.export.step(event)
        return found

    def _observe_telemetry(self, batch: list[tuple[Record, TelemetryBatch]]) -> list[Detection]:
        """A poll's telemetry in one vectorised pass; if that fails, one record at a time, so only the
        record at fault is dead-lettered (rounds scored before the failure may then be learnt twice)."""
        try:
            found = self.engine.observe_telemetry([(self.engine.pid(r.tp), b) for r, b in batch])
        except RetryableError:
            raise
        except Exception as exc:  # noqa: BLE001 - find the record at fault below
            log.warning("a poll's telemetry failed to score (%s): scoring its records one at a time", exc)
            found, done = [], []
            for record, one in batch:
                result = self.commits.guard(record, partial(self._observe_one, batch=one))
                if result is not None:
                    found += result
                    done.append((record, one))
            batch = done
        for _, one in batch:
            if one.ts.size:
                self._advance(float(one.ts.max()))
        dropped = self.engine.take_dropped()  # samples of series past the series limit
        for scope, samples in dropped.items():
            self.metrics.samples_dropped.labels(f"{scope}_series_limit").inc(samples)
        self.metrics.samples.inc(sum(b.sample_count for _, b in batch) - sum(dropped.values()))
        self.metrics.series.set(self.engine.slots.in_use)
        return found

    def _observe_one(self, record: Record, batch: TelemetryBatch) -> list[Detection]:
        return self.engine.observe_telemetry([(self.engine.pid(record.tp), batch)])

    def _publish_predictions(self, predictions: list[Prediction]) -> None:
        for p in predictions:
            self.producer.send(self.topics.predictions, encode(p), key=p.entity.encode())
            self.metrics.predictions.labels(p.predictor).inc()

    def _publish(self, detections: list[Detection]) -> None:
        wall = self.clock.now()
        for det in detections:
            self.producer.send(self.topics.detections, encode(det), key=det.series.encode())
            self.metrics.detections.labels(det.detector, det.decision).inc()
            self.metrics.detection_delay.labels(det.detector).observe(max(0.0, wall - det.ts))
            self.export.detection(det)

    def _refresh_export(self, now: float | None) -> None:
        """The dashboards' view of the fleet (``export.py``), at most every ``REFRESH_S``."""
        self.export.refresh(self.engine.slots, now)
        if now is not None:
            self.export.forget(now)
