"""The delivery thread: moves the buffer's head to the broker, and removes a record only once acknowledged.

One chunk at a time (oldest records first) is handed to the producer, and the thread waits for
every record's acknowledgement before the next chunk. The buffer then drops exactly the
acknowledged prefix; a record that failed, and everything after it, is sent again. So:

- nothing is lost: a record leaves the buffer after the broker has it, or when the broker rejects
  the record itself (too large, corrupt; counted as dropped, reason ``rejected``);
- order holds: a later chunk is never sent before an earlier one is acknowledged, and within a
  chunk the producer keeps one request in flight per connection (``max_in_flight=1``), so a retried
  request cannot be overtaken by the next one. That holds without idempotence, which is off by
  default (``kafka.idempotence``): the embedded Tansu commits a producer's sequence before the
  batch, and the acceptance test caught a batch lost that way (a broker stopped between the two
  answered the retry as a duplicate). Without it the worst case is a duplicate, never a loss;
- no duplicates in the normal case: a chunk is sent again only when its records failed. While the
  broker is away, kafka-python keeps retrying the chunk it holds (for ``delivery.timeout.ms``,
  120 s); everything newer waits in the buffer, in memory and then on disk.

The one ambiguous case is a record the broker wrote but whose acknowledgement never came back
(the connection dropped, or the agent stopped while waiting): it is sent again, so a consumer can
see it twice. That is Kafka's at-least-once, and consumers already deduplicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from vigil.collectors.agent.buffer import DeliveryBuffer
from vigil.collectors.agent.metrics import AgentMetrics
from vigil.collectors.agent.spill import Entry

from vigil.bus import AckingProducer
from vigil.errors import PermanentError, RetryableError

log = logging.getLogger(__name__)

ProducerFactory = Callable[[], AckingProducer]

CHUNK_RECORDS = 500
CHUNK_BYTES = 4 * 1024 * 1024
# kafka-python gives up on a record after delivery.timeout.ms (120 s); past this the chunk's
# callbacks are assumed lost and the producer is replaced.
ACK_WAIT_LIMIT_S = 180.0
SLOW_ACK_S = 5.0  # no acknowledgement for this long: the broker counts as unreachable


class _Chunk:
    """Per-record outcomes of one chunk, filled by the producer's callbacks (on its own thread)."""

    def __init__(self, size: int) -> None:
        self.outcomes: list[BaseException | bool | None] = [False] * size  # False: not acknowledged (yet)
        self.pending = 0
        self.cond = threading.Condition()

    def callback(self, index: int) -> Callable[[BaseException | None], None]:
        with self.cond:
            self.pending += 1

        def on_delivery(error: BaseException | None) -> None:
            with self.cond:
                if self.outcomes[index] is False:
                    self.outcomes[index] = error
                    self.pending -= 1
                    self.cond.notify_all()

        return on_delivery

    def wait(self, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.pending == 0, timeout_s)

    def settled_prefix(self) -> tuple[int, list[int], BaseException | None]:
        """How many leading records are settled (acknowledged, or rejected for good), which of those
        were rejected, and why the next one is not settled (None: all are)."""
        rejected: list[int] = []
        with self.cond:
            for i, outcome in enumerate(self.outcomes):
                if isinstance(outcome, PermanentError):
                    rejected.append(i)
                elif isinstance(outcome, BaseException):
                    return i, rejected, outcome
                elif outcome is not None:
                    return i, rejected, RetryableError("not acknowledged")
            return len(self.outcomes), rejected, None


class Deliverer:
    def __init__(
        self,
        buffer: DeliveryBuffer,
        connect: ProducerFactory,
        topics: Mapping[str, str],
        metrics: AgentMetrics,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.buffer = buffer
        self._connect = connect
        self._topics = dict(topics)
        self._metrics = metrics
        self._backoff_max = backoff_max_s
        self._backoff = 0.1
        self._producer: AckingProducer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="agent-delivery", daemon=True)
        self.connected = False
        self.down_since: float | None = None  # monotonic time the broker was found away
        self.last_ack: float | None = None  # epoch seconds

    # ------------------------------------------------------------------ control
    def start(self) -> Deliverer:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def drain(self, timeout_s: float) -> bool:
        """Wait until the buffer is empty (everything acknowledged) or ``timeout_s`` passed."""
        return self.buffer.wait_empty(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sending; a chunk still waiting for acknowledgements stays in the buffer."""
        self._stop.set()
        self.buffer.wake()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("delivery thread still busy after %.0fs; stopping without it", timeout_s)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:  # the thread must outlive any failure: the buffer still holds the records
                    log.exception("delivery step failed; retrying")
                    self._pause()
        finally:
            if self._producer is not None:
                self._producer.close(0.0)  # abandon what is unacknowledged: the buffer keeps it

    def _step(self) -> None:
        if self._producer is None:
            try:
                self._producer = self._connect()
            except RetryableError as exc:
                self._mark_down(str(exc))
                self._pause()
                return
        chunk = self.buffer.peek(CHUNK_RECORDS, CHUNK_BYTES, timeout_s=0.5)
        if not chunk:
            return
        settled, rejected, error = self._deliver(self._producer, chunk)
        if settled:
            self.buffer.commit(settled)
            self._published([entry for i, entry in enumerate(chunk[:settled]) if i not in rejected])
        for i in rejected:
            log.error("the broker rejected a %s record for good: dropped", chunk[i].stream)
            self._metrics.record_drop(chunk[i].stream, "rejected", 1)
        if error is not None:
            self._mark_down(str(error))
            self._pause()

    def _deliver(self, producer: AckingProducer, chunk: list[Entry]) -> tuple[int, list[int], BaseException | None]:
        state = _Chunk(len(chunk))
        for i, entry in enumerate(chunk):
            on_delivery = state.callback(i)
            topic = self._topics.get(entry.stream)
            if topic is None:
                on_delivery(PermanentError(f"unknown stream {entry.stream!r}"))
                break
            try:
                producer.send_acked(topic, entry.value, entry.key, on_delivery)
            except (RetryableError, PermanentError) as exc:
                on_delivery(exc)
                break
        self._wait(state)
        return state.settled_prefix()

    def _wait(self, state: _Chunk) -> None:
        started = time.monotonic()
        while not state.wait(0.2):
            waited = time.monotonic() - started
            if self._stop.is_set():
                return  # shutting down: the unacknowledged records stay in the buffer
            if waited > SLOW_ACK_S:
                self._mark_down(f"no acknowledgement for {waited:.0f}s")
            if waited > ACK_WAIT_LIMIT_S:
                log.error("producer lost %d acknowledgements; replacing it", state.pending)
                if self._producer is not None:
                    self._producer.close(0.0)
                self._producer = None
                return

    # ------------------------------------------------------------------ state
    def _published(self, entries: list[Entry]) -> None:
        counts: dict[str, int] = {}
        samples = 0
        for entry in entries:
            counts[entry.stream] = counts.get(entry.stream, 0) + 1
            samples += entry.samples
        for stream, count in counts.items():
            self._metrics.published_records.labels(stream).inc(count)
        if samples:
            self._metrics.published_samples.inc(samples)
        if not entries:
            return
        if self.down_since is not None:
            stats = self.buffer.stats()
            log.warning(
                "broker acknowledging again after %.0fs; %d records in memory and %d spilled still to send",
                time.monotonic() - self.down_since,
                stats["memory_records"],
                stats["spill_records"],
            )
        elif self.last_ack is None:
            log.info("broker acknowledging")
        self.last_ack = time.time()
        self.connected = True
        self.down_since = None
        self._backoff = 0.1

    def _mark_down(self, reason: str) -> None:
        if self.down_since is None:
            log.warning("broker unreachable (%s): buffering records, memory then disk", reason)
            self.down_since = time.monotonic()
        self.connected = False

    def _pause(self) -> None:
        self._stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, self._backoff_max)
