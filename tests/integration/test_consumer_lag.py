"""Consumer lag on the real Tansu broker: exact when the last fetch saw the log end, and never above
the true lag otherwise (Tansu's ListOffsets says the last batch's base offset + 1)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from vigil.bus import Record, TopicPartition
from vigil.bus.checkpoint import Checkpoint
from vigil.bus.kafka import KafkaBus
from vigil.clock import SystemClock
from vigil.config import ConsumerHealthConfig

pytestmark = pytest.mark.integration


class NoState:
    def save(self, tps: set[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None: ...

    def assigned(self, tps: set[TopicPartition]) -> None: ...

    def revoked(self, tps: set[TopicPartition]) -> None: ...


def produce(bus: KafkaBus, topic: str, count: int) -> None:
    """``count`` records in one produce request (one batch), acknowledged."""
    producer = bus.producer()
    for i in range(count):
        producer.send(topic, f"v{i}".encode(), key=b"k")
    producer.flush(10)
    producer.close()


def test_lag_against_the_committed_offset_on_tansu(kafka_bus: KafkaBus, unique: str) -> None:
    topic, group = f"lag-{unique}", f"g-{unique}"
    tp = TopicPartition(topic, 0)
    kafka_bus.create_topics({topic: 1})
    produce(kafka_bus, topic, 100)
    produce(kafka_bus, topic, 1)  # log end 101
    registry = CollectorRegistry()
    commits = Checkpoint(kafka_bus, [topic], group, NoState(), registry)
    watch = commits.watch(SystemClock(), ConsumerHealthConfig(lag_every=3600), 1.0)
    try:
        got: list[Record] = []
        deadline = time.monotonic() + 40
        while len(got) < 101 and time.monotonic() < deadline:
            got += commits.poll(0.5)
        assert len(got) == 101
        commits.handle(got[:30], lambda r: None)  # handled (and committed) the first 30 only
        commits.commit()
        watch.measure(commits.committed())
        assert watch.lag == {tp: 71}  # the fetch saw the end: exact
        labels = {"group": group, "topic": topic, "partition": "0"}
        assert registry.get_sample_value("vigil_consumer_lag_records", labels) == 71

        produce(kafka_bus, topic, 10)  # one batch of 10 at offsets 101..110, not fetched yet
        watch.measure(commits.committed())
        truth = 111 - 30
        assert truth - 9 <= watch.lag[tp] <= truth  # Tansu: base offset of the last batch + 1
        print(f"lag measured {watch.lag[tp]} (true {truth}) before the next fetch")

        deadline = time.monotonic() + 20
        while len(got) < 111 and time.monotonic() < deadline:
            got += commits.poll(0.5)
        watch.measure(commits.committed())
        assert watch.lag == {tp: truth}  # the fetch's high watermark is exact again
    finally:
        commits.close(commit=False)
