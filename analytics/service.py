"""The analytics consumer: telemetry, logs and training in; Detections out; state snapshotted.

Commit protocol (the same numbered steps are in ARCHITECTURE.md), run every ``snapshot_every``,
on revoke and on close:

    1. publish the detections produced from the consumed records and flush the producer;
    2. snapshot detector state for the partitions (versioned bytes, atomic file replace), each
       snapshot carrying the next offset it reflects;
    3. commit the consumed offsets.

A crash between steps replays, never loses: after 1 the detections are out (alerting dedups a
replay); after 2 the restored state already reflects records up to its offset, and those records
are skipped when they are delivered again, so nothing is learned twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.engine import Engine
from vigil.analytics.state import SnapshotStore

from vigil.bus import Bus, DeadLetters, Record, TopicPartition
from vigil.clock import Clock
from vigil.codec import decode, encode
from vigil.errors import InvalidEvent
from vigil.events import Detection, LogEvent, Prediction, TelemetryBatch, TrainingStep
from vigil.topics import Topics
from vigil.xid import XidCatalog

log = logging.getLogger(__name__)
EXPECTED: dict[str, type[Any]] = {"telemetry": TelemetryBatch, "logs": LogEvent, "training": TrainingStep}


class AnalyticsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter("vigil_analytics_records", "Records consumed, by topic", ["topic"], registry=registry)
        self.samples = Counter("vigil_analytics_samples", "Telemetry samples scored", registry=registry)
        self.samples_dropped = Counter(
            "vigil_analytics_samples_dropped",
            "Telemetry samples dropped because their series was over a series limit, by limit",
            ["reason"],
            registry=registry,
        )
        self.series = Gauge("vigil_analytics_series", "Series with state in this process", registry=registry)
        self.detections = Counter(
            "vigil_analytics_detections", "Detections published", ["detector", "decision"], registry=registry
        )
        self.predictions = Counter(
            "vigil_analytics_predictions", "Predictions published", ["predictor"], registry=registry
        )
        self.snapshots_discarded = Counter(
            "vigil_analytics_snapshots_discarded",
            "Restored snapshots discarded because the group never committed past them (another log)",
            ["topic"],
            registry=registry,
        )
        self.poll_seconds = Histogram(
            "vigil_analytics_poll_seconds",
            "Time to decode and score one poll",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )


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
        self.store = SnapshotStore(state_dir)
        self.producer = bus.producer()
        self.dead_letters = DeadLetters(self.producer, registry)
        self.streams = {topics.telemetry: "telemetry", topics.logs: "logs", topics.training: "training"}
        self._offsets: dict[TopicPartition, int] = {}  # next offset to read, per partition consumed
        self._skip_below: dict[TopicPartition, int] = {}  # records a restored snapshot already reflects
        self._unverified: set[TopicPartition] = set()  # restored, not yet checked against committed offsets
        self._last_checkpoint = clock.monotonic()
        self._last_tick = clock.monotonic()
        self._last_poll = clock.monotonic()
        self._processed = 0
        self._closed = False
        # The event detectors' clock (hang, XID quiet periods) is event time: the newest timestamp
        # consumed, advanced by wall time only while the consumer is caught up. A consumer that
        # stalls or replays a backlog therefore never mistakes its own delay for a silent job.
        self._watermark: float | None = None
        self._last_record_at = clock.monotonic()
        self._caught_up = False
        # on_assign may run inside bus.consumer(): everything it touches exists before this line
        self.consumer = bus.consumer(list(self.streams), config.group, self._on_assign, self._on_revoke)

    # -- the loop
    def step(self, timeout_s: float = 1.0) -> int:
        """One poll: decode, detect, publish; the commit protocol when ``snapshot_every`` elapsed."""
        records = self.consumer.poll(timeout_s, self.config.max_poll_records)
        if self._unverified:
            self._verify_restored()
        started = time.perf_counter()
        self._last_poll = self.clock.monotonic()
        found = self._process(records)
        self._caught_up = not records
        if records:
            self._last_record_at = self.clock.monotonic()
        now = self.event_now()
        if now is not None and self.clock.monotonic() - self._last_tick >= self.config.tick_every:
            self._last_tick = self.clock.monotonic()
            found += self.engine.tick(now)
            self._publish_predictions(self.engine.predictions(now))
        self._publish(found)
        if records:
            self.metrics.poll_seconds.observe(time.perf_counter() - started)
        if self.clock.monotonic() - self._last_checkpoint >= self.config.snapshot_every:
            self.checkpoint()
        return len(records)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step(self.config.poll_timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self.checkpoint()
        self._closed = True
        self.consumer.close()
        self.producer.close()

    def health(self) -> dict[str, object]:
        return {
            "ok": not self._closed,
            "assigned": sorted(f"{tp.topic}-{tp.partition}" for tp in self.consumer.assignment()),
            "records": self._processed,
            "series": int(self.engine.slots.size),
            "last_poll_age_s": round(self.clock.monotonic() - self._last_poll, 3),
        }

    # -- commit protocol
    def checkpoint(self, tps: Iterable[TopicPartition] | None = None) -> None:
        targets = set(self.consumer.assignment() if tps is None else tps)
        # 1. publish detections (sent as produced) and flush the producer
        self.producer.flush()
        # 2. snapshot detector state for the partitions, with the offset each snapshot reflects
        for tp in sorted(targets):
            stream = self.streams.get(tp.topic)
            if stream is not None:
                body = self.engine.snapshot(tp, stream)
                body["offset"] = self._offsets.get(tp, self._skip_below.get(tp, 0))
                self.store.save(tp, body)
        # 3. commit offsets
        offsets = {tp: self._offsets[tp] for tp in targets if tp in self._offsets}
        if offsets:
            self.consumer.commit(offsets)
        self._last_checkpoint = self.clock.monotonic()

    def _on_assign(self, tps: set[TopicPartition]) -> None:
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
            self._unverified.discard(tp)
            stream = self.streams.get(tp.topic)
            offset = self._skip_below.get(tp, 0)
            if stream is None or offset == 0 or self.consumer.committed(tp) is not None:
                continue
            log.warning(
                "snapshot of %s-%d (offset %d) has no committed offset: starting cold", tp.topic, tp.partition, offset
            )
            self.metrics.snapshots_discarded.labels(tp.topic).inc()
            self._skip_below.pop(tp, None)
            self.engine.drop(tp, stream)

    def _on_revoke(self, tps: set[TopicPartition]) -> None:
        if not self._closed and hasattr(self, "consumer"):
            self.checkpoint(tps)
        for tp in tps:
            stream = self.streams.get(tp.topic)
            if stream:
                self.engine.drop(tp, stream)
            self._offsets.pop(tp, None)
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
        telemetry: list[tuple[int, TelemetryBatch]] = []
        found: list[Detection] = []
        for record in records:
            tp = record.tp
            self._offsets[tp] = record.offset + 1
            if record.offset < self._skip_below.get(tp, 0):
                continue
            stream = self.streams.get(record.topic, "")
            self.metrics.records.labels(record.topic).inc()
            event = self._decode(record, stream)
            if event is None:
                continue
            if isinstance(event, TelemetryBatch):
                telemetry.append((self.engine.pid(tp), event))
                if event.ts.size:
                    self._advance(float(event.ts.max()))
            else:
                now = self._advance(event.ts)
                found += self.engine.observe_event(stream, event, self.engine.pid(tp), now)
        if telemetry:
            found += self.engine.observe_telemetry(telemetry)
            dropped = self.engine.take_dropped()
            for scope, samples in dropped.items():
                self.metrics.samples_dropped.labels(f"{scope}_series_limit").inc(samples)
            self.metrics.samples.inc(sum(b.sample_count for _, b in telemetry) - sum(dropped.values()))
            self.metrics.series.set(self.engine.slots.in_use)
        self._processed += len(records)
        return found

    def _decode(self, record: Record, stream: str) -> Any:
        try:
            event = decode(record.value)
        except InvalidEvent as exc:
            self.dead_letters.send(record, "invalid_event", str(exc))
            return None
        expected = EXPECTED.get(stream)
        if expected is None or not isinstance(event, expected):
            self.dead_letters.send(record, "unexpected_type", f"{type(event).__name__} on {record.topic}")
            return None
        return event

    def _publish_predictions(self, predictions: list[Prediction]) -> None:
        for p in predictions:
            self.producer.send(self.topics.predictions, encode(p), key=p.entity.encode())
            self.metrics.predictions.labels(p.predictor).inc()

    def _publish(self, detections: list[Detection]) -> None:
        for det in detections:
            self.producer.send(self.topics.detections, encode(det), key=det.series.encode())
            self.metrics.detections.labels(det.detector, det.decision).inc()
