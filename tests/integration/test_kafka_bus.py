"""The Kafka bus against the real Tansu broker: groups, commits, durability."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vigil.broker import EmbeddedBroker
from vigil.bus import Record, TopicPartition
from vigil.bus.kafka import KafkaBus, KafkaBusConsumer
from vigil.config import KafkaConfig

pytestmark = pytest.mark.integration


def drain(consumer: KafkaBusConsumer, want: int, timeout_s: float = 40.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += consumer.poll(0.5)
    return got


def produce(bus: KafkaBus, topic: str, count: int, start: int = 0) -> None:
    producer = bus.producer()
    for i in range(start, start + count):
        producer.send(topic, f"v{i}".encode(), key=f"k{i % 17}".encode())
    producer.flush(10)
    producer.close()


def test_two_consumers_in_one_group_split_the_partitions(kafka_bus: KafkaBus, unique: str) -> None:
    topic, group = f"split-{unique}", f"g-{unique}"
    kafka_bus.create_topics({topic: 4})
    first = kafka_bus.consumer([topic], group)
    drain(first, 1, timeout_s=8)  # joins the group and owns all four partitions
    second = kafka_bus.consumer([topic], group)
    # Each member polls on its own thread, as two analytics processes would.
    settled = threading.Event()

    def keep_polling(consumer: KafkaBusConsumer) -> None:
        while not settled.is_set():
            consumer.poll(0.2)

    threads = [threading.Thread(target=keep_polling, args=(c,), daemon=True) for c in (first, second)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        a, b = first.assignment(), second.assignment()
        if a and b and len(a) + len(b) == 4:
            break
        time.sleep(0.1)
    settled.set()
    for thread in threads:
        thread.join(timeout=30)
    first.close()
    second.close()
    assert a and b, f"both consumers must own partitions, got {a} and {b}"
    assert not a & b
    assert {tp.partition for tp in a | b} == {0, 1, 2, 3}


def test_offsets_resume_after_consumer_restart(kafka_bus: KafkaBus, unique: str) -> None:
    topic, group = f"resume-{unique}", f"g-{unique}"
    kafka_bus.create_topics({topic: 2})
    produce(kafka_bus, topic, 20)
    consumer = kafka_bus.consumer([topic], group)
    first = drain(consumer, 20)
    consumer.commit()
    consumer.close()
    produce(kafka_bus, topic, 10, start=20)
    consumer = kafka_bus.consumer([topic], group)
    second = drain(consumer, 10)
    time.sleep(0.5)
    second += consumer.poll(0.5)
    consumer.close()
    assert sorted(r.value for r in first) == sorted(f"v{i}".encode() for i in range(20))
    assert sorted(r.value for r in second) == sorted(f"v{i}".encode() for i in range(20, 30))


def test_uncommitted_records_are_redelivered(kafka_bus: KafkaBus, unique: str) -> None:
    topic, group = f"redeliver-{unique}", f"g-{unique}"
    kafka_bus.create_topics({topic: 1})
    produce(kafka_bus, topic, 5)
    consumer = kafka_bus.consumer([topic], group)
    assert len(drain(consumer, 5)) == 5
    consumer.close()  # no commit: at-least-once means we see them again
    consumer = kafka_bus.consumer([topic], group)
    again = drain(consumer, 5)
    consumer.close()
    assert sorted(r.value for r in again) == [f"v{i}".encode() for i in range(5)]


@pytest.mark.slow
def test_durable_broker_keeps_records_and_offsets_across_restart(tmp_path: Path, unique: str) -> None:
    topic, group = f"durable-{unique}", f"g-{unique}"
    with EmbeddedBroker(tmp_path) as broker:
        bus = KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap]))
        bus.create_topics({topic: 1})
        produce(bus, topic, 10)
        consumer = bus.consumer([topic], group)
        assert len(drain(consumer, 4 + 6)) == 10
        consumer.commit()
        consumer.close()
        produce(bus, topic, 5, start=10)
        port = broker.bootstrap
    with EmbeddedBroker(tmp_path) as broker:
        assert broker.bootstrap == port  # the remembered port is reused
        bus = KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap]))
        consumer = bus.consumer([topic], group)
        rest = drain(consumer, 5)
        consumer.close()
    assert sorted(r.value for r in rest) == sorted(f"v{i}".encode() for i in range(10, 15))


def test_broker_stop_stops_only_its_own_processes(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path, ephemeral=True).start()
    pids = broker.pids()
    broker.stop()
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_committed_offset_is_none_until_the_group_commits(kafka_bus: KafkaBus, unique: str) -> None:
    topic, group = f"committed-{unique}", f"g-{unique}"
    kafka_bus.create_topics({topic: 1})
    produce(kafka_bus, topic, 5)
    consumer = kafka_bus.consumer([topic], group)
    drain(consumer, 5)
    tp = TopicPartition(topic, 0)
    before = consumer.committed(tp)
    consumer.commit({tp: 5})
    after = consumer.committed(tp)
    consumer.close()
    assert before is None and after == 5


@pytest.mark.parametrize("idempotence", [False, True])
def test_idempotence_is_the_configs_choice_and_order_holds_either_way(
    kafka_config: KafkaConfig, unique: str, idempotence: bool
) -> None:
    config = kafka_config.model_copy(update={"idempotence": idempotence})
    bus = KafkaBus(config)
    topic = f"idem-{unique}"
    bus.create_topics({topic: 1})
    producer = bus.producer()
    settings = producer._producer.config
    assert settings["enable_idempotence"] is idempotence  # kafka-python 3 would default to True
    # Without idempotence, one request in flight keeps a retried batch from being overtaken.
    assert settings["max_in_flight_requests_per_connection"] == (5 if idempotence else 1)
    for i in range(200):
        producer.send(topic, str(i).encode(), key=b"k")
    producer.flush(10)
    producer.close()
    consumer = bus.consumer([topic], f"g-{unique}")
    try:
        assert [int(r.value) for r in drain(consumer, 200)] == list(range(200))
    finally:
        consumer.close()


def test_rewind_goes_back_to_the_committed_offset(kafka_bus: KafkaBus, unique: str) -> None:
    topic, group = f"rewind-{unique}", f"g-{unique}"
    kafka_bus.create_topics({topic: 1})
    produce(kafka_bus, topic, 10)
    consumer = kafka_bus.consumer([topic], group)
    try:
        assert len(drain(consumer, 10)) == 10
        tp = TopicPartition(topic, 0)
        assert consumer.rewind({tp}) == {tp: None}  # nothing committed: back to the beginning
        assert len(drain(consumer, 10)) == 10
        consumer.commit({tp: 6})
        assert consumer.rewind({tp}) == {tp: 6}
        assert [r.offset for r in drain(consumer, 4)] == [6, 7, 8, 9]
        deadline = time.monotonic() + 10
        while not consumer.connected() and time.monotonic() < deadline:  # the first heartbeat: ~1 s in
            consumer.poll(0.2)
        assert consumer.connected()
    finally:
        consumer.close()


def test_a_starved_partition_is_named_once_and_fetched_alone_for_a_while(
    kafka_config: KafkaConfig, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The loaded durable Tansu left one partition of a wide fetch without records, run after run, while
    a client reading it alone got them. That cannot be staged on demand, so the broker's side is played
    here: partition 0 reports records (its end offset) that never come. The consumer names it once,
    fetches it alone for a while (partition 1 paused, its records waiting), then lets partition 1 in."""
    # A partition with no data holds a fetch for fetch_max_wait: keep that well under the stall time.
    config = kafka_config.model_copy(update={"fetch_max_wait": 0.2})
    bus = KafkaBus(config)
    topic, group = f"starved-{unique}", f"g-{unique}"
    bus.create_topics({topic: 2})
    starved, other = TopicPartition(topic, 0), TopicPartition(topic, 1)
    produce(bus, topic, 20)
    consumer = KafkaBusConsumer(config, [topic], group, None, None, stall_s=2.0)
    try:
        first = drain(consumer, 20)
        assert {r.tp for r in first} == {starved, other}
        keys_of_other = sorted({r.key for r in first if r.tp == other and r.key is not None})
        real = consumer._consumer.end_offsets

        def ends(tps: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
            return {tp: 99 if tp.partition == 0 else off for tp, off in real(tps, timeout_ms).items()}

        consumer._consumer.end_offsets = ends  # type: ignore[method-assign]  # partition 0: "records to 99"
        deadline = time.monotonic() + 20
        while not consumer._consumer.paused() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert {(tp.topic, tp.partition) for tp in consumer._consumer.paused()} == {(topic, 1)}
        assert consumer.starved == {f"{topic}-0"}
        producer = bus.producer()
        for key in keys_of_other:  # records for partition 1 wait for the relief to end
            producer.send(topic, b"later", key=key)
        producer.flush(10)
        producer.close()
        arrived = drain(consumer, len(keys_of_other), timeout_s=20)
        assert arrived and {r.tp for r in arrived} == {other} and not consumer._consumer.paused()
        warnings = [r.getMessage() for r in caplog.records if "fetching it alone" in r.getMessage()]
        assert len(warnings) == 1 and f"{topic}-0 delivered nothing" in warnings[0]
    finally:
        consumer.close()


def test_a_member_that_gives_up_partitions_commits_them_without_failing_its_poll(
    kafka_bus: KafkaBus, unique: str
) -> None:
    """kafka-python 3 runs rebalance callbacks on its IO thread, where a blocking commit raises; the revoke
    commit is sent without waiting there, and the member's next poll goes on normally."""
    topic, group = f"revoke-{unique}", f"g-{unique}"
    kafka_bus.create_topics({topic: 2})
    produce(kafka_bus, topic, 20)
    handed_back: list[set[TopicPartition]] = []

    def revoke(tps: set[TopicPartition]) -> None:
        first.commit({tp: position for tp, position in positions.items() if tp in tps})
        handed_back.append(tps)

    first = kafka_bus.consumer([topic], group, on_revoke=revoke)
    positions: dict[TopicPartition, int] = {}
    for record in drain(first, 20):
        positions[record.tp] = record.offset + 1
    second = kafka_bus.consumer([topic], group)
    try:
        deadline = time.monotonic() + 30
        while not (handed_back and first.assignment() and second.assignment()) and time.monotonic() < deadline:
            first.poll(0.2)  # must not raise
            second.poll(0.2)
        assert handed_back and len(first.assignment()) == len(second.assignment()) == 1
        [moved] = second.assignment()
        # the second member resumes where the first left off: the revoke commit reached the broker
        assert second.committed(moved) == positions[moved]
    finally:
        second.close()
        first.close()
