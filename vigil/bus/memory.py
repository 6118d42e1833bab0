"""An in-memory bus for unit and scenario tests: partitions, key hashing, groups and commits.

It follows Kafka's semantics closely enough for logic tests (records are kept per partition,
consumers in one group split the partitions, a new consumer resumes from committed offsets), but
it is never the only test of a path: integration tests run the same code on the real broker.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Sequence

from vigil.bus.base import DeliveryCallback, Header, RebalanceCallback, Record, TopicPartition
from vigil.errors import RetryableError


class MemoryBus:
    """``available = False`` plays a broker that went away, as kafka-python sees it: sends are held by
    the producer, flushes, commits and offset reads raise ``RetryableError``, polls come back empty."""

    def __init__(self, default_partitions: int = 1) -> None:
        self._lock = threading.RLock()
        self._default_partitions = default_partitions
        self.available = True
        self.topics: dict[str, list[list[Record]]] = {}
        self._committed: dict[str, dict[TopicPartition, int]] = {}
        self._members: dict[str, list[MemoryConsumer]] = {}

    # -- Bus
    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def consumer(
        self,
        topics: Iterable[str],
        group: str,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> MemoryConsumer:
        consumer = MemoryConsumer(self, list(topics), group, on_assign, on_revoke)
        with self._lock:
            for topic in consumer.topics:
                self._ensure(topic)
            self._members.setdefault(group, []).append(consumer)
            self._rebalance(group)
        return consumer

    def create_topics(self, partitions: dict[str, int]) -> None:
        with self._lock:
            for name, count in partitions.items():
                self._ensure(name, count)

    def close(self) -> None:
        pass

    # -- helpers used by producer/consumer and by tests
    def records(self, topic: str) -> list[Record]:
        with self._lock:
            return [r for part in self.topics.get(topic, []) for r in part]

    def _ensure(self, topic: str, count: int | None = None) -> list[list[Record]]:
        if topic not in self.topics:
            self.topics[topic] = [[] for _ in range(count or self._default_partitions)]
        return self.topics[topic]

    def check(self, what: str) -> None:
        if not self.available:
            raise RetryableError(f"{what}: the broker is away")

    def _append(self, topic: str, value: bytes, key: bytes | None, headers: Sequence[Header]) -> None:
        with self._lock:
            parts = self._ensure(topic)
            index = zlib.crc32(key) % len(parts) if key is not None else sum(map(len, parts)) % len(parts)
            part = parts[index]
            part.append(Record(topic, index, len(part), key, value, 0, tuple(headers)))

    def _rebalance(self, group: str) -> None:
        members = self._members.get(group, [])
        for member in members:
            member._set_assignment(set())
        tps = sorted({TopicPartition(t, p) for m in members for t in m.topics for p in range(len(self.topics[t]))})
        for i, tp in enumerate(tps):
            if members:
                members[i % len(members)].pending.add(tp)
        for member in members:
            member._set_assignment(member.pending)
            member.pending = set()

    def _leave(self, consumer: MemoryConsumer) -> None:
        with self._lock:
            members = self._members.get(consumer.group, [])
            if consumer in members:
                members.remove(consumer)
                consumer._set_assignment(set())
                self._rebalance(consumer.group)


class MemoryProducer:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._held: list[tuple[str, bytes, bytes | None, Sequence[Header]]] = []  # sent while the broker was away

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Sequence[Header] = ()) -> None:
        self._held.append((topic, value, key, headers))
        if self._bus.available:
            self._deliver()

    def send_acked(self, topic: str, value: bytes, key: bytes | None, on_delivery: DeliveryCallback) -> None:
        self._bus.check("send")
        self._bus._append(topic, value, key, ())
        on_delivery(None)

    def flush(self, timeout_s: float | None = None) -> None:
        self._bus.check("flush")
        self._deliver()

    def _deliver(self) -> None:
        held, self._held = self._held, []
        for record in held:
            self._bus._append(*record)

    def close(self, timeout_s: float = 0.0) -> None:
        if self._bus.available:
            self._deliver()
        self._held = []  # what the broker never got is abandoned, as with a closed Kafka producer


class MemoryConsumer:
    def __init__(
        self,
        bus: MemoryBus,
        topics: list[str],
        group: str,
        on_assign: RebalanceCallback | None,
        on_revoke: RebalanceCallback | None,
    ) -> None:
        self._bus = bus
        self.topics = topics
        self.group = group
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self.pending: set[TopicPartition] = set()

    def _set_assignment(self, tps: set[TopicPartition]) -> None:
        revoked = self._assigned - tps
        if revoked and self._on_revoke:
            self._on_revoke(revoked)
        added = tps - self._assigned
        committed = self._bus._committed.setdefault(self.group, {})
        for tp in revoked:
            self._positions.pop(tp, None)
        for tp in added:
            self._positions[tp] = committed.get(tp, 0)
        self._assigned = set(tps)
        if added and self._on_assign:
            self._on_assign(added)

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Record]:
        out: list[Record] = []
        if not self._bus.available:
            return out
        with self._bus._lock:
            for tp in sorted(self._assigned):
                part = self._bus.topics[tp.topic][tp.partition]
                pos = self._positions[tp]
                take = part[pos : pos + max_records - len(out)]
                out.extend(take)
                self._positions[tp] = pos + len(take)
                if len(out) >= max_records:
                    break
        return out

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self._bus.check("commit")
        with self._bus._lock:
            committed = self._bus._committed.setdefault(self.group, {})
            committed.update(offsets if offsets is not None else self._positions)

    def rewind(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._bus.check("rewind")
        with self._bus._lock:
            committed = self._bus._committed.get(self.group, {})
            found = {tp: committed.get(tp) for tp in tps if tp in self._assigned}
            for tp, offset in found.items():
                self._positions[tp] = offset or 0
            return found

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def connected(self) -> bool:
        return self._bus.available

    def committed(self, tp: TopicPartition) -> int | None:
        self._bus.check("committed")
        with self._bus._lock:
            return self._bus._committed.get(self.group, {}).get(tp)

    def log_end(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self._bus.check("log end")
        with self._bus._lock:
            return {tp: len(self._bus._ensure(tp.topic)[tp.partition]) for tp in tps}

    def close(self) -> None:
        self._bus._leave(self)

    def crash(self) -> None:
        """Leave as a killed process does: evicted by the group, no revoke callback runs."""
        self._on_revoke = None
        self._bus._leave(self)
