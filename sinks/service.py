"""``vigil sink influx``: a consumer group on the telemetry and detections topics, writing line protocol.

It runs the kernel's commit protocol (``vigil.bus.checkpoint``), with the store write as its step 4:

    1. consume a poll; 2. encode each record into line protocol (one that does not decode, or is of
    the wrong type, goes to ``<topic>.dlq``) and keep its lines pending; a write request is sent
    whenever ``batch_size`` lines are pending; every ``flush_interval``:
    3. flush the dead-letter producer;
    4. write what is still pending and wait for the store to confirm it (``save``);
    5. commit the offsets of the records whose lines are confirmed.

So an offset is committed only after the store confirmed every line of the records below it: a sink
killed anywhere replays from the last commit and leaves no gap (a replayed line has the same series
and timestamp, and overwrites itself). A write the store refuses as malformed is sent again record
by record, and only the records it still refuses are dead-lettered. When the store does not confirm
(down, 5xx, 429, credentials), the library's retries run first; then the step fails, the sink backs
off (``vigil_sink_store_*``), rewinds to its committed offsets and tries again: Kafka, not memory,
holds what the store has not confirmed, so an outage of any length loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from vigil.sinks.config import InfluxConfig
from vigil.sinks.lines import TelemetryLines, detection_line
from vigil.sinks.store import InfluxStore, StoreRejected, StoreUnavailable

from vigil.bus import Bus, Record, TopicPartition
from vigil.bus.checkpoint import Checkpoint
from vigil.bus.retry import Dependency, Outage, run_with_recovery
from vigil.clock import Clock
from vigil.codec import decode
from vigil.errors import RetryableError, UnexpectedEvent
from vigil.events import Detection, TelemetryBatch
from vigil.metrics_catalog import counter, histogram
from vigil.topics import Topics

log = logging.getLogger(__name__)


STORE = Dependency(
    "vigil_sink_store_up", "vigil_sink_store_outages_total", "vigil_sink_store_retries_total", "sink_store", "store"
)


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = counter(registry, "vigil_sink_records_total")
        self.points = counter(registry, "vigil_sink_points_written_total")
        self.skipped = counter(registry, "vigil_sink_samples_skipped_total")
        self.requests = counter(registry, "vigil_sink_write_requests_total")
        self.retries = counter(registry, "vigil_sink_write_retries_total")
        self.write_seconds = histogram(registry, "vigil_sink_write_seconds")
        self.lag = histogram(registry, "vigil_sink_lag_seconds")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One record's lines, kept until the store confirms them."""

    record: Record
    body: bytes
    lines: int
    stream: str


class InfluxSink:
    def __init__(
        self,
        bus: Bus,
        topics: Topics,
        config: InfluxConfig,
        clock: Clock,
        registry: CollectorRegistry,
        store: InfluxStore | None = None,
    ) -> None:
        self.config, self.clock = config, clock
        self.metrics = SinkMetrics(registry)
        self.store = store if store is not None else InfluxStore(config, on_retry=self.metrics.retries.inc)
        self.lines = TelemetryLines()
        self.streams = {topics.name(stream): stream for stream in config.streams}
        self.outage = Outage("sink", clock, registry)
        self.store_outage = Outage("sink", clock, registry, initial_s=1.0, max_s=30.0, dependency=STORE)
        self._pending: list[Chunk] = []
        self._pending_lines = 0
        self._flush_due = clock.monotonic() + config.flush_interval
        self._last_write: float | None = None
        self._records = 0
        self._final = False  # closing: one attempt per write, no retries
        self._closed = False
        self._writing = False  # waiting on the store: not a stalled consumer
        self.commits = Checkpoint(bus, list(self.streams), config.group, self, registry)
        self.consumer = self.commits.consumer
        self.watch = self.commits.watch(clock, config.health, config.poll_timeout)

    # ------------------------------------------------------------------ the loop

    def step(self) -> int:
        """Steps 1-2 for one poll; a write once ``batch_size`` lines wait; steps 3-5 when the flush is due."""
        wait = min(self.config.poll_timeout, max(0.001, self._flush_due - self.clock.monotonic()))
        records = self.commits.poll(wait, self.config.max_poll_records)
        for record in records:
            self.commits.track(record)
            self.metrics.records.labels(record.topic).inc()
            chunk = self.commits.guard(record, self._encode)
            if chunk is not None and chunk.lines:
                self._pending.append(chunk)
                self._pending_lines += chunk.lines
        self._records += len(records)
        if self._pending_lines >= self.config.batch_size:
            self._write_pending()
        if self.clock.monotonic() >= self._flush_due:
            self.checkpoint()
        return len(records)

    def checkpoint(self) -> None:
        self.commits.commit()
        self._flush_due = self.clock.monotonic() + self.config.flush_interval

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop``; a store or broker failure backs off, rewinds to the last commit, carries on."""
        try:
            run_with_recovery(stop, self.step, self.rewind, self.outage, self._outage_for)
        finally:
            self.close()

    def _outage_for(self, exc: RetryableError) -> Outage:
        return self.store_outage if isinstance(exc, StoreUnavailable) else self.outage

    def rewind(self) -> None:
        """Back to the committed offsets; the pending lines are dropped (``revoked``) and read again."""
        self.commits.rewind()
        self._flush_due = self.clock.monotonic() + self.config.flush_interval

    def close(self) -> None:
        """Write and commit what is pending (one attempt: a pod's grace period is short), leave the group."""
        if self._closed:
            return
        self._closed = True
        self._final = True
        healthy = self.outage.down_since is None and self.store_outage.down_since is None
        try:
            self.commits.close(commit=healthy)
        finally:
            self.store.close()

    def health(self) -> dict[str, object]:
        """``ok`` false once closed, when polling stalled (not while a write waits on the store, nor in an
        outage) or the lag keeps growing (``vigil.bus.watch``)."""
        waiting = self._writing or self.outage.down_since is not None or self.store_outage.down_since is not None
        consumer = self.watch.health(outage=waiting)
        last = None if self._last_write is None else round(self.clock.monotonic() - self._last_write, 3)
        return {
            "service": "sink-influx",
            **consumer,
            "ok": not self._closed and bool(consumer["ok"]),
            "store": self.store.where,
            "assigned": sorted(f"{tp.topic}-{tp.partition}" for tp in self.consumer.assignment()),
            "records": self._records,
            "pending_lines": self._pending_lines,
            "last_write_age_s": last,
            **self.outage.health(),
            **self.store_outage.health(),
        }

    # ------------------------------------------------------------------ records and writes

    def _encode(self, record: Record) -> Chunk:
        event = decode(record.value)
        stream = self.streams[record.topic]
        if stream == "telemetry" and isinstance(event, TelemetryBatch):
            encoded = self.lines.encode(event)
            if encoded.skipped:
                self.metrics.skipped.labels("not_finite").inc(encoded.skipped)
            return Chunk(record, encoded.body, encoded.lines, stream)
        if stream == "detections" and isinstance(event, Detection):
            return Chunk(record, detection_line(event), 1, stream)
        raise UnexpectedEvent(f"{type(event).__name__} on {record.topic}")

    def _write_pending(self) -> bool:
        """Write every pending chunk; True if the store refused some records, which were dead-lettered.

        The chunks stay pending until the store confirmed them, so a failed write is sent again by the
        next commit (a rebalance swallows its error) or dropped by the rewind that follows."""
        chunks = self._pending
        if not chunks:
            return False
        rejected = False
        try:
            self._write(b"".join(c.body for c in chunks))
        except StoreRejected as exc:
            log.warning("the store refused a batch of %d records (%s): writing them one by one", len(chunks), exc)
            rejected = self._isolate(chunks)
        self._pending, self._pending_lines = [], 0
        self._confirmed(chunks)
        return rejected

    def _isolate(self, chunks: list[Chunk]) -> bool:
        rejected = False
        for chunk in chunks:
            try:
                self._write(chunk.body)
            except StoreRejected as exc:
                self.commits.reject(chunk.record, "store_rejected", str(exc))
                rejected = True
        return rejected

    def _write(self, body: bytes) -> None:
        started = time.perf_counter()
        self._writing = True
        try:
            self.store.write(body, retry=not self._final)
        except StoreRejected:
            self.metrics.requests.labels("rejected").inc()
            raise
        except StoreUnavailable:
            self.metrics.requests.labels("failed").inc()
            raise
        finally:
            self._writing = False
        self.metrics.requests.labels("ok").inc()
        self.metrics.write_seconds.observe(time.perf_counter() - started)
        self.store_outage.succeeded()

    def _confirmed(self, chunks: list[Chunk]) -> None:
        now_ms = self.clock.now() * 1000.0
        per_stream: dict[str, int] = {}
        for chunk in chunks:
            per_stream[chunk.stream] = per_stream.get(chunk.stream, 0) + chunk.lines
            if chunk.record.timestamp_ms > 0:
                self.metrics.lag.observe(max(0.0, now_ms - chunk.record.timestamp_ms) / 1000.0)
        for stream, lines in per_stream.items():
            self.metrics.points.labels(stream).inc(lines)
        self._last_write = self.clock.monotonic()

    # ------------------------------------------------------------------ the commit protocol's hooks

    def save(self, tps: set[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None:
        """Step 4: every pending line confirmed by the store before any offset is committed. Dead letters
        sent here (refused records) are flushed here too: step 3 ran before them."""
        if self._write_pending():
            self.commits.producer.flush()

    def assigned(self, tps: set[TopicPartition]) -> None:
        """Nothing to load: the sink keeps no state beyond its offsets."""

    def revoked(self, tps: set[TopicPartition]) -> None:
        """Forget the pending lines of ``tps``: whoever reads them next (us after a rewind) writes them."""
        self._pending = [c for c in self._pending if c.record.tp not in tps]
        self._pending_lines = sum(c.lines for c in self._pending)
