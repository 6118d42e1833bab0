"""The Influx sink's commit order on the in-memory bus with a store double: offsets move only past lines the
store confirmed, a bad record is dead-lettered and passed, a refused record is found and dead-lettered alone,
and a store or a sink that goes away costs a replay, never a gap. The same paths run against real servers in
tests/integration/test_sink_stores.py and test_sink_process.py."""

from __future__ import annotations

import re

import numpy as np
from prometheus_client import CollectorRegistry
from vigil.sinks.config import InfluxConfig
from vigil.sinks.service import InfluxSink
from vigil.sinks.store import StoreRejected, StoreUnavailable

from vigil.bus import TopicPartition
from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import encode
from vigil.errors import RetryableError
from vigil.events import Detection, TelemetryBatch, series_key
from vigil.topics import Topics

T0 = 1_796_500_000.0
STAMP = re.compile(rb"^(\S+) value=\S+ (\d+)$", re.M)


class FakeStore:
    """Confirms a write unless ``down``; refuses (as a 400 would) any body holding ``poison``."""

    where = "http://store.test"

    def __init__(self) -> None:
        self.down = False
        self.poison = b"\x00never"
        self.bodies: list[bytes] = []
        self.attempts = 0

    def write(self, body: bytes, retry: bool = True) -> None:
        self.attempts += 1
        if self.down:
            raise StoreUnavailable("connection refused")
        if self.poison in body:
            raise StoreRejected("400: field type conflict")
        self.bodies.append(body)

    def points(self) -> set[tuple[bytes, int]]:
        return {(m.group(1), int(m.group(2))) for body in self.bodies for m in STAMP.finditer(body)}

    def close(self) -> None:
        pass


class Harness:
    def __init__(self, **config: object) -> None:
        self.bus = MemoryBus(default_partitions=2)
        self.topics = Topics("t")
        self.bus.create_topics({self.topics.telemetry: 2, self.topics.detections: 1})
        self.clock = FakeClock(T0)
        self.store = FakeStore()
        self.config = InfluxConfig(url="http://store.test", **config)  # type: ignore[arg-type]
        self.producer = self.bus.producer()

    def sink(self, registry: CollectorRegistry | None = None) -> InfluxSink:
        registry = registry or CollectorRegistry()
        return InfluxSink(self.bus, self.topics, self.config, self.clock, registry, self.store)  # type: ignore[arg-type]

    def telemetry(self, host: str, tick: int, value: float = 1.0) -> None:
        series = (series_key("gpu_power_watts", {"gpu_index": "0"}), "host_load1")
        batch = TelemetryBatch(host, "dc1", np.array([T0 + tick]), series, np.array([[value, value]]))
        self.producer.send(self.topics.telemetry, encode(batch), key=host.encode())

    def raw(self, topic: str, value: bytes) -> None:
        self.producer.send(topic, value, key=b"x")

    def committed(self, sink: InfluxSink) -> dict[TopicPartition, int | None]:
        return {tp: sink.consumer.committed(tp) for tp in sorted(sink.consumer.assignment())}

    def flush_due(self, sink: InfluxSink) -> int:
        self.clock.advance(self.config.flush_interval)
        return sink.step()


def expected(hosts: list[str], ticks: range) -> set[tuple[bytes, int]]:
    out = set()
    for host in hosts:
        for tick in ticks:
            ns = round((T0 + tick) * 1e9)
            out.add((f"gpu_power_watts,cluster=dc1,gpu_index=0,host={host}".encode(), ns))
            out.add((f"host_load1,cluster=dc1,host={host}".encode(), ns))
    return out


def test_offsets_are_committed_only_after_the_store_confirmed_the_lines() -> None:
    h = Harness()
    sink = h.sink()
    for tick in range(3):
        h.telemetry("node-01", tick)
    assert sink.step() == 3
    assert h.store.bodies == [] and set(h.committed(sink).values()) == {None}  # consumed, not yet due
    h.flush_due(sink)
    assert h.store.points() == expected(["node-01"], range(3))
    assert sum(offset or 0 for offset in h.committed(sink).values()) == 3


def test_a_full_batch_is_written_at_once_and_committed_at_the_flush() -> None:
    h = Harness(batch_size=4)
    sink = h.sink()
    for tick in range(3):
        h.telemetry("node-01", tick)  # 2 lines each
    sink.step()
    assert len(h.store.bodies) == 1 and set(h.committed(sink).values()) == {None}
    h.flush_due(sink)
    assert sum(offset or 0 for offset in h.committed(sink).values()) == 3


def test_records_that_do_not_decode_or_are_of_another_type_are_dead_lettered_and_passed() -> None:
    h = Harness()
    sink = h.sink()
    h.raw(h.topics.telemetry, b"\x93garbage")
    det = Detection(T0, "zscore", "s", {}, 1.0, "firing", "warning", {}, T0, T0)
    h.raw(h.topics.telemetry, encode(det))
    h.telemetry("node-01", 0)
    sink.step()
    h.flush_due(sink)
    reasons = sorted(dict(r.headers)["vigil.error.reason"] for r in h.bus.records(h.topics.telemetry + ".dlq"))
    assert reasons == [b"invalid_event", b"unexpected_type"]
    assert h.store.points() == expected(["node-01"], range(1))
    assert sum(offset or 0 for offset in h.committed(sink).values()) == 3


def test_a_record_the_store_refuses_is_found_and_dead_lettered_alone() -> None:
    h = Harness()
    h.store.poison = b"host=node-66"
    sink = h.sink(registry := CollectorRegistry())
    for host in ("node-01", "node-66", "node-02"):
        h.telemetry(host, 0)
    sink.step()
    h.flush_due(sink)
    [letter] = h.bus.records(h.topics.telemetry + ".dlq")
    assert dict(letter.headers)["vigil.error.reason"] == b"store_rejected"
    assert b"field type conflict" in dict(letter.headers)["vigil.error.detail"]
    assert h.store.points() == expected(["node-01", "node-02"], range(1))
    assert registry.get_sample_value("vigil_sink_write_requests_total", {"outcome": "rejected"}) == 2
    assert sum(offset or 0 for offset in h.committed(sink).values()) == 3


def test_a_store_outage_commits_nothing_and_replays_from_the_last_commit() -> None:
    h = Harness()
    sink = h.sink(registry := CollectorRegistry())
    h.telemetry("node-01", 0)
    sink.step()
    h.flush_due(sink)
    before = h.committed(sink)
    h.store.down = True
    for tick in (1, 2):
        h.telemetry("node-01", tick)
    sink.step()
    try:
        h.flush_due(sink)
        raise AssertionError("the write should have failed")
    except StoreUnavailable as exc:
        assert sink._outage_for(exc) is sink.store_outage
        sink.store_outage.failed(exc)
    assert h.committed(sink) == before and sink.health()["sink_store_ok"] is False
    assert registry.get_sample_value("vigil_sink_store_up") == 0
    h.store.down = False
    sink.rewind()
    sink.step()
    h.flush_due(sink)
    assert h.store.points() == expected(["node-01"], range(3))
    assert sink.health()["sink_store_ok"] is True and registry.get_sample_value("vigil_sink_store_up") == 1


def test_a_sink_that_dies_mid_batch_is_replaced_without_a_gap() -> None:
    h = Harness(batch_size=4)
    first = h.sink()
    for tick in range(6):
        h.telemetry("node-01", tick)
    first.step()  # the first 4 records: 8 lines written, none committed
    h.flush_due(first)  # all 6 written and committed
    for tick in range(6, 10):
        h.telemetry("node-01", tick)
    first.step()  # ticks 6-9 written (a full batch), never committed
    first.consumer.crash()  # type: ignore[attr-defined]  # killed: no revoke, no close
    second = h.sink()
    second.step()
    h.flush_due(second)
    assert h.store.points() == expected(["node-01"], range(10))


def test_a_revoke_writes_the_pending_lines_before_committing_them() -> None:
    h = Harness()
    first = h.sink()
    for host in ("node-01", "node-02", "node-03", "node-04"):
        h.telemetry(host, 0)
    first.step()
    assert h.store.bodies == []
    second = h.sink()  # joins: the first gives up a partition, committing it (steps 3-5) first
    assert h.store.points() >= {p for p in expected(["node-01", "node-02", "node-03", "node-04"], range(1))}
    second.step()
    h.flush_due(first)
    h.flush_due(second)
    committed = {**h.committed(first), **h.committed(second)}
    assert sum(offset or 0 for offset in committed.values()) == 4


def test_a_broker_outage_is_charged_to_the_bus_not_the_store() -> None:
    h = Harness()
    sink = h.sink()
    h.telemetry("node-01", 0)
    sink.step()
    h.bus.available = False
    try:
        h.flush_due(sink)
        raise AssertionError("the commit should have failed")
    except RetryableError as exc:
        assert not isinstance(exc, StoreUnavailable) and sink._outage_for(exc) is sink.outage


def test_a_store_outage_during_a_rebalance_loses_nothing() -> None:
    h = Harness()
    first = h.sink()
    hosts = ["node-01", "node-02", "node-03", "node-04"]
    for host in hosts:
        h.telemetry(host, 0)
    first.step()
    assert len({c.record.partition for c in first._pending}) == 2  # both telemetry partitions pending
    h.store.down = True
    second = h.sink()  # a rebalance: the first's commit on revoke fails (logged), nothing is committed
    assert set(h.committed(first).values()) | set(h.committed(second).values()) == {None}
    h.store.down = False
    for sink in (first, second):
        sink.step()
        h.flush_due(sink)
    assert h.store.points() == expected(hosts, range(1))
