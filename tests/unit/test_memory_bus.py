"""The in-memory bus keeps Kafka's group semantics that the services rely on."""

from __future__ import annotations

from vigil.bus.memory import MemoryBus


def test_group_members_split_partitions_and_resume_from_commits() -> None:
    bus = MemoryBus()
    bus.create_topics({"t": 4})
    producer = bus.producer()
    for i in range(40):
        producer.send("t", str(i).encode(), key=str(i).encode())
    a = bus.consumer(["t"], "g")
    b = bus.consumer(["t"], "g")
    assert a.assignment() and b.assignment() and not a.assignment() & b.assignment()
    got = a.poll(0) + b.poll(0)
    assert sorted(int(r.value) for r in got) == list(range(40))
    a.commit()
    b.commit()
    a.close()  # b takes over a's partitions from a's committed offsets: nothing is re-read
    assert len(b.assignment()) == 4
    assert b.poll(0) == []


def test_uncommitted_records_are_redelivered_to_the_next_member() -> None:
    bus = MemoryBus()
    bus.producer().send("t", b"x")
    first = bus.consumer(["t"], "g")
    assert [r.value for r in first.poll(0)] == [b"x"]
    first.close()
    assert [r.value for r in bus.consumer(["t"], "g").poll(0)] == [b"x"]
