"""The one commit protocol every Vigil consumer runs (quix-streams' checkpoint is the model).

``Checkpoint`` owns a consumer group member, a renewable producer and the dead-letter sender, and
runs these steps in this order (ARCHITECTURE.md "The commit protocol" has the same numbers):

    1. consume: ``poll()`` a batch of records;
    2. process: ``handle(records, fn)`` calls ``fn`` on each record and notes its next offset.
       ``fn`` may publish outputs on ``producer`` and write local state. Any exception but
       ``RetryableError`` (the broker, not the record, is at fault) sends that one record to
       ``<topic>.dlq`` with the reason and the error, counts it, and moves on: a consumer never
       crash-loops on data;
    3. publish: ``commit()`` flushes the producer, so every output and dead letter derived from the
       records is on the broker;
    4. store: the ``PartitionState.save`` hook persists what must outlive the process, given the
       offsets it reflects (analytics: detector snapshots; alerting: marks its alerts published);
    5. commit: the consumed offsets are committed. Offsets never go backwards: a partition whose
       offset is below the one this member last committed is left out, logged and counted
       (``vigil_consumer_commits_refused_total``).

A failure between any two steps replays records, never loses them. After a ``RetryableError``
(a broker away, a producer left unusable by an error it will not retry) the service calls
``rewind()``: the producer is rebuilt, the consumer seeks back to the committed offsets, and the
state hooks drop and reload what step 4 last saved, so processing resumes from the last complete
checkpoint. ``handle`` is not required for every record: a service may batch work over a poll and
use ``guard`` to isolate one record's failure (analytics does for telemetry).

``watch()`` attaches a ``ConsumerWatch`` (``watch.py``): each poll then notes its time and, every
so often, the lag of each partition against the offsets step 5 committed, for ``/healthz``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry

from vigil.bus.base import Bus, DeadLetters, Record, TopicPartition
from vigil.bus.retry import RenewableProducer
from vigil.bus.watch import ConsumerWatch
from vigil.clock import Clock
from vigil.config import ConsumerHealthConfig
from vigil.errors import InvalidEvent, RetryableError
from vigil.metrics_catalog import counter

log = logging.getLogger(__name__)
T = TypeVar("T")


class PartitionState(Protocol):
    """What a consumer keeps beside its offsets. Each method may do nothing."""

    def save(self, tps: set[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None:
        """Step 4 for ``tps``: persist state reflecting the records below ``offsets`` (next offsets)."""

    def assigned(self, tps: set[TopicPartition]) -> None:
        """``tps`` are ours (a rebalance, or a rewind): load their state as step 4 last saved it."""

    def revoked(self, tps: set[TopicPartition]) -> None:
        """``tps`` are no longer ours, or are about to be reloaded: forget their state in memory."""


def dead_letter_reason(exc: Exception) -> str:
    """``invalid_event`` (or the InvalidEvent subclass' own reason) for bad data, ``handler_error`` else."""
    if isinstance(exc, InvalidEvent):
        return exc.reason
    return "handler_error"


class Checkpoint:
    def __init__(
        self,
        bus: Bus,
        topics: Sequence[str],
        group: str,
        state: PartitionState,
        registry: CollectorRegistry,
        flush_timeout_s: float = 30.0,
    ) -> None:
        self.producer = RenewableProducer(bus.producer, registry)
        self.dead_letters = DeadLetters(self.producer, registry)
        self.group = group
        self._registry = registry
        self.watcher: ConsumerWatch | None = None
        self._state = state
        self._flush_timeout_s = flush_timeout_s
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, per partition handled
        self._committed: dict[TopicPartition, int] = {}  # what this member last committed
        self._closing = False  # close(commit=False): the revoke on leaving the group commits nothing
        self._rejected: dict[tuple[str, str], int] = {}  # dead letters per topic and reason, for the log
        self.refused = counter(registry, "vigil_consumer_commits_refused_total")
        self.consumer = bus.consumer(list(topics), group, self._assigned, self._revoked)

    # ------------------------------------------------------------------ steps 1 and 2

    def watch(self, clock: Clock, config: ConsumerHealthConfig, poll_timeout_s: float) -> ConsumerWatch:
        """Watch this member's polls and lag from now on (``self.watcher``)."""
        self.watcher = ConsumerWatch(self.consumer, self.group, clock, self._registry, config, poll_timeout_s)
        return self.watcher

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Record]:
        """Step 1."""
        records = self.consumer.poll(timeout_s, max_records)
        if self.watcher is not None:
            self.watcher.polled(self._committed)
        return records

    def handle(self, records: Iterable[Record], fn: Callable[[Record], T | None]) -> list[T]:
        """Step 2: ``fn`` on each record, in order; the results that are not None."""
        out: list[T] = []
        for record in records:
            self.track(record)
            result = self.guard(record, fn)
            if result is not None:
                out.append(result)
        return out

    def track(self, record: Record) -> None:
        """Note ``record`` as consumed: its partition's next offset moves past it (never back)."""
        tp = record.tp
        self._positions[tp] = max(self._positions.get(tp, 0), record.offset + 1)

    def guard(self, record: Record, fn: Callable[[Record], T | None]) -> T | None:
        """``fn(record)``; on any exception but RetryableError the record is dead-lettered and None returned."""
        try:
            return fn(record)
        except RetryableError:
            raise
        except Exception as exc:  # noqa: BLE001 - the rule: one record's failure never stops the consumer
            reason = dead_letter_reason(exc)
            trace = exc if reason == "handler_error" else None  # a bug's traceback, not bad data's
            self.reject(record, reason, f"{type(exc).__name__}: {exc}", trace)
            return None

    def reject(self, record: Record, reason: str, detail: str, trace: BaseException | None = None) -> None:
        """Send one record to ``<topic>.dlq`` (delivered by the next commit's flush) and count it.

        A burst of bad records must not flood the log: the 1st, 10th, 100th... of a topic and reason
        are logged (the dead-letter topic keeps every one)."""
        self.dead_letters.send(record, reason, detail)
        seen = self._rejected[(record.topic, reason)] = self._rejected.get((record.topic, reason), 0) + 1
        if seen == 10 ** (len(str(seen)) - 1):
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            log.warning("dead-lettered %s (%s, %d so far): %s", where, reason, seen, detail, exc_info=trace)

    def committed(self) -> dict[TopicPartition, int]:
        """The next offsets this member committed (or found committed on its last rewind)."""
        return dict(self._committed)

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of each partition handled since the last assignment or rewind."""
        return dict(self._positions)

    # ------------------------------------------------------------------ steps 3 to 5

    def commit(self, tps: Iterable[TopicPartition] | None = None, flush_timeout_s: float | None = None) -> None:
        """Steps 3-5 for ``tps`` (default: every assigned partition)."""
        if self.producer.failed:
            raise RetryableError("a send or flush failed since the last rewind: rewind before committing")
        targets = set(self.consumer.assignment() if tps is None else tps)
        offsets = {tp: self._positions[tp] for tp in targets if tp in self._positions}
        # 3. publish: outputs and dead letters were sent as produced; now they must all be on the broker
        self.producer.flush(self._flush_timeout_s if flush_timeout_s is None else flush_timeout_s)
        # 4. store the state the offsets reflect
        self._state.save(targets, offsets)
        # 5. commit, never backwards
        forward = self._forward(offsets)
        if forward:
            self.consumer.commit(forward)
            self._committed.update(forward)

    def _forward(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        forward: dict[TopicPartition, int] = {}
        for tp, offset in offsets.items():
            done = self._committed.get(tp)
            if done is not None and offset < done:
                log.warning("not committing %s-%d back from %d to %d", tp.topic, tp.partition, done, offset)
                self.refused.labels(tp.topic).inc()
            elif done != offset:
                forward[tp] = offset
        return forward

    # ------------------------------------------------------------------ recovery and rebalancing

    def rewind(self) -> None:
        """After a failed step: a new producer, the consumer back at its committed offsets, state reloaded.

        Raises ``RetryableError`` while the broker is away (call again after a backoff)."""
        self.producer.renew()
        tps = self.consumer.assignment()
        committed = self.consumer.rewind(tps)
        self._positions.clear()
        for tp, offset in committed.items():
            if offset is not None:
                self._committed[tp] = max(offset, self._committed.get(tp, offset))
        self._state.revoked(tps)
        self._state.assigned(tps)
        log.info("rewound %d partitions to their committed offsets", len(tps))

    def _assigned(self, tps: set[TopicPartition]) -> None:
        self._state.assigned(tps)

    def _revoked(self, tps: set[TopicPartition]) -> None:
        try:
            if not self._closing:
                self.commit(tps)
        except RetryableError as exc:  # the next owner replays from the last commit
            log.warning("could not commit revoked partitions (%s); they will be replayed", exc)
        self._state.revoked(tps)
        for tp in tps:
            self._positions.pop(tp, None)
            self._committed.pop(tp, None)

    def close(self, commit: bool = True, flush_timeout_s: float = 5.0) -> None:
        """Commit what was handled (``commit=False`` while the broker is away: the next start replays it),
        then leave the group."""
        try:
            if commit:
                self.commit(flush_timeout_s=flush_timeout_s)
        except RetryableError as exc:
            log.warning("final commit failed (%s); the next start replays from the last one", exc)
        finally:
            self._closing = True
            self.consumer.close()
            self.producer.close()
