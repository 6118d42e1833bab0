"""The bus interface shared by the Kafka and in-memory implementations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from vigil.metrics_catalog import counter
from vigil.topics import DLQ_SUFFIX

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int = 0
    headers: Sequence[Header] = field(default_factory=tuple)

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


RebalanceCallback = Callable[[set[TopicPartition]], None]


class Producer(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Sequence[Header] = ()) -> None:
        """Queue a record; raises RetryableError when the local buffer is full and the broker away."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued record is acknowledged; raises RetryableError on failure."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop; records not acknowledged within ``timeout_s`` are abandoned."""


DeliveryCallback = Callable[[BaseException | None], None]


class AckingProducer(Producer, Protocol):
    """A producer that reports each record's fate, for callers that keep a record until the broker has it."""

    def send_acked(self, topic: str, value: bytes, key: bytes | None, on_delivery: DeliveryCallback) -> None:
        """Queue a record; ``on_delivery(None)`` once the broker acknowledged it, else ``on_delivery`` with a
        RetryableError (try again later) or PermanentError (this record can never be delivered). Raises
        either error when the record cannot even be queued. The callback may run on another thread."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop; records not acknowledged within ``timeout_s`` are abandoned (their callbacks fail)."""


class Consumer(Protocol):
    def poll(self, timeout_s: float, max_records: int = 500) -> list[Record]: ...

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit next-offsets to read (all consumed positions when None)."""

    def assignment(self) -> set[TopicPartition]: ...

    def connected(self) -> bool:
        """Whether the broker answered this member lately: a poll that comes back empty means "caught
        up" only then (while the broker is away, polls come back empty too)."""

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed next-offset for ``tp``; None when the group never committed one."""

    def rewind(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Seek each assigned partition back to the group's committed offset (its beginning when none), so
        the next polls replay what was not committed; returns the committed offsets found."""

    def log_end(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end offset (the next offset to be written) as well as the client knows it;
        raises RetryableError when the broker does not answer."""

    def close(self) -> None: ...


class Bus(Protocol):
    def producer(self) -> Producer: ...

    def consumer(
        self,
        topics: Iterable[str],
        group: str,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> Consumer: ...

    def create_topics(self, partitions: dict[str, int]) -> None:
        """Create the topics that do not exist yet (name -> partition count)."""

    def close(self) -> None: ...


class DeadLetters:
    """Sends a record that cannot be processed to ``<topic>.dlq`` with the reason, and counts it.

    The original key, value and headers are kept, so nothing is lost and the record can be replayed.
    """

    def __init__(self, producer: Producer, registry: CollectorRegistry | None = None) -> None:
        self._producer = producer
        self.counter = counter(registry, "vigil_dead_letter_records_total")

    def send(self, record: Record, reason: str, error: str) -> None:
        headers = [
            *record.headers,
            ("vigil.error.reason", reason.encode()),
            ("vigil.error.detail", error.encode()[:1000]),
            ("vigil.source.partition", str(record.partition).encode()),
            ("vigil.source.offset", str(record.offset).encode()),
        ]
        self._producer.send(record.topic + DLQ_SUFFIX, record.value, key=record.key, headers=headers)
        self.counter.labels(record.topic, reason).inc()
