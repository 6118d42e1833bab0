"""The kernel's commit protocol on the in-memory bus: per-record error isolation, step order, offsets
that never go backwards, and the rewind after a failed step."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from vigil.bus import Record, TopicPartition
from vigil.bus.checkpoint import Checkpoint
from vigil.bus.memory import MemoryBus
from vigil.errors import InvalidEvent, RetryableError, UnexpectedEvent

TOPIC = "in"
TP = TopicPartition(TOPIC, 0)


class State:
    """Records what the protocol asks of a consumer's state, in order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def save(self, tps: set[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None:
        self.log.append(f"save:{dict(offsets)}")

    def assigned(self, tps: set[TopicPartition]) -> None:
        self.log.append(f"assigned:{sorted(tp.partition for tp in tps)}")

    def revoked(self, tps: set[TopicPartition]) -> None:
        self.log.append(f"revoked:{sorted(tp.partition for tp in tps)}")


class Harness:
    def __init__(self, bus: MemoryBus | None = None) -> None:
        self.bus = bus or MemoryBus()
        self.bus.create_topics({TOPIC: 1, "out": 1, TOPIC + ".dlq": 1})
        self.log: list[str] = []
        self.registry = CollectorRegistry()
        self.cp = Checkpoint(self.bus, [TOPIC], "g", State(self.log), self.registry)
        self.handled: list[bytes] = []

    def send(self, *values: bytes) -> None:
        producer = self.bus.producer()
        for value in values:
            producer.send(TOPIC, value)

    def handler(self, record: Record) -> bytes:
        """Publishes each value upper-cased; raises what a value asks for."""
        errors: dict[bytes, Exception] = {
            b"value": ValueError("year 10000 is out of range"),
            b"key": KeyError("gpu_index"),
            b"overflow": OverflowError("Python int too large to convert to SQLite INTEGER"),
            b"invalid": InvalidEvent("ts: not a timestamp"),
            b"unexpected": UnexpectedEvent("Alert on in"),
        }
        if record.value in errors:
            raise errors[record.value]
        self.cp.producer.send("out", record.value.upper())
        self.handled.append(record.value)
        return record.value

    def dlq(self) -> list[tuple[bytes, dict[str, bytes]]]:
        return [(r.value, dict(r.headers)) for r in self.bus.records(TOPIC + ".dlq")]

    def dead_letters(self, reason: str) -> float:
        labels = {"topic": TOPIC, "reason": reason}
        return self.registry.get_sample_value("vigil_dead_letter_records_total", labels) or 0.0


@pytest.mark.parametrize("poison", [b"value", b"key", b"overflow"])
def test_a_handler_exception_dead_letters_that_record_and_the_next_ones_are_processed(poison: bytes) -> None:
    h = Harness()
    h.send(b"a", poison, b"b", b"c")
    assert h.cp.handle(h.cp.poll(0), h.handler) == [b"a", b"b", b"c"]
    h.cp.commit()
    [(value, headers)] = h.dlq()
    assert value == poison
    assert headers["vigil.error.reason"] == b"handler_error"
    assert headers["vigil.source.offset"] == b"1"
    detail = headers["vigil.error.detail"].decode()
    assert detail.split(":")[0] in {"ValueError", "KeyError", "OverflowError"}
    assert h.dead_letters("handler_error") == 1
    assert [r.value for r in h.bus.records("out")] == [b"A", b"B", b"C"]
    assert h.cp.consumer.committed(TP) == 4  # the poison record is behind us, committed with the rest


def test_invalid_events_are_dead_lettered_with_their_own_reason() -> None:
    h = Harness()
    h.send(b"invalid", b"unexpected", b"ok")
    h.cp.handle(h.cp.poll(0), h.handler)
    h.cp.commit()
    assert [(v, hd["vigil.error.reason"]) for v, hd in h.dlq()] == [
        (b"invalid", b"invalid_event"),
        (b"unexpected", b"unexpected_type"),
    ]
    assert h.dead_letters("invalid_event") == 1 and h.dead_letters("unexpected_type") == 1
    assert h.handled == [b"ok"]


def test_a_poison_record_is_never_delivered_again_after_a_restart() -> None:
    bus = MemoryBus()
    first = Harness(bus)
    first.send(b"value", b"a")
    first.cp.handle(first.cp.poll(0), first.handler)
    first.cp.close()
    second = Harness(bus)
    second.send(b"b")
    assert second.cp.handle(second.cp.poll(0), second.handler) == [b"b"]
    assert len(second.dlq()) == 1  # dead-lettered once, by the first member


def test_retryable_errors_are_not_the_records_fault_they_stop_the_batch() -> None:
    h = Harness()
    h.send(b"a", b"b")

    def broker_away(record: Record) -> None:
        raise RetryableError("broker away")

    with pytest.raises(RetryableError):
        h.cp.handle(h.cp.poll(0), broker_away)
    assert h.dlq() == []


def test_commit_runs_flush_then_store_then_offsets() -> None:
    h = Harness()
    flush, commit = h.cp.producer.flush, h.cp.consumer.commit

    def logged_flush(timeout_s: float | None = None) -> None:
        h.log.append("flush")
        flush(timeout_s)

    def logged_commit(offsets: dict[TopicPartition, int] | None = None) -> None:
        h.log.append(f"commit:{offsets}")
        commit(offsets)

    h.cp.producer.flush = logged_flush  # type: ignore[method-assign]
    h.cp.consumer.commit = logged_commit  # type: ignore[method-assign]
    h.send(b"a", b"b")
    h.cp.handle(h.cp.poll(0), h.handler)
    h.cp.commit()
    assert h.log[-3:] == ["flush", f"save:{ {TP: 2} }", f"commit:{ {TP: 2} }"]


def test_offsets_never_go_backwards() -> None:
    h = Harness()
    h.send(b"a", b"b", b"c")
    h.cp.handle(h.cp.poll(0), h.handler)
    h.cp.commit()
    assert h.cp.consumer.committed(TP) == 3
    # A stale record (a redelivery below what is committed) is handled, but moves no offset back.
    h.cp.handle([Record(TOPIC, 0, 0, None, b"a")], h.handler)
    h.cp.commit()
    assert h.cp.consumer.committed(TP) == 3
    # A member whose position went back (a bug, a broker that lost records) is refused and counted.
    h.cp._positions[TP] = 1
    h.cp.commit()
    assert h.cp.consumer.committed(TP) == 3
    assert h.registry.get_sample_value("vigil_consumer_commits_refused_total", {"topic": TOPIC}) == 1


def test_nothing_is_committed_between_a_failed_flush_and_the_rewind() -> None:
    h = Harness()
    h.send(b"a")
    h.cp.handle(h.cp.poll(0), h.handler)
    h.bus.available = False
    with pytest.raises(RetryableError):
        h.cp.commit()
    h.bus.available = True
    # The broker is back, but what the failed flush held is unknown: no commit until the rewind.
    with pytest.raises(RetryableError, match="rewind"):
        h.cp.commit()
    assert h.cp.consumer.committed(TP) is None


def test_rewind_replays_from_the_committed_offset_with_state_reloaded() -> None:
    h = Harness()
    h.send(b"a", b"b")
    h.cp.handle(h.cp.poll(0), h.handler)
    h.cp.commit()
    h.send(b"c", b"d")
    h.cp.handle(h.cp.poll(0), h.handler)  # handled, published, not yet committed
    h.bus.available = False
    with pytest.raises(RetryableError):
        h.cp.commit()
    with pytest.raises(RetryableError):
        h.cp.rewind()  # still away: try again later
    h.bus.available = True
    h.log.clear()
    h.cp.rewind()
    assert h.log == ["revoked:[0]", "assigned:[0]"]
    assert [r.value for r in h.cp.poll(0)] == [b"c", b"d"]  # replayed from the committed offset 2
    assert h.registry.get_sample_value("vigil_producer_renewals_total") == 1


def test_revoked_partitions_are_committed_before_they_go() -> None:
    bus = MemoryBus(default_partitions=2)
    bus.create_topics({TOPIC: 2})
    first = Harness(bus)
    producer = bus.producer()
    for key in (b"k1", b"k2", b"k3", b"k4"):
        producer.send(TOPIC, b"v", key=key)
    first.cp.handle(first.cp.poll(0), first.handler)
    Harness(bus)  # a second member joins: the first gives up one partition, committing it first
    assert "revoked:[0, 1]" in first.log
    committed = {tp.partition: first.cp.consumer.committed(tp) for tp in (TP, TopicPartition(TOPIC, 1))}
    assert sum(v or 0 for v in committed.values()) == 4


def test_close_without_commit_leaves_the_group_committing_nothing() -> None:
    h = Harness()
    h.send(b"a")
    h.cp.handle(h.cp.poll(0), h.handler)
    h.cp.close(commit=False)
    assert h.bus._committed["g"].get(TP) is None
