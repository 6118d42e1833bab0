"""The consumer watch: stalled polling and growing lag make /healthz fail, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry

from vigil.bus import TopicPartition
from vigil.bus.watch import ConsumerWatch, LagTrend
from vigil.clock import FakeClock
from vigil.config import ConsumerHealthConfig
from vigil.errors import RetryableError

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeConsumer:
    def __init__(self) -> None:
        self.assigned = {A, B}
        self.ends = {A: 0, B: 0}
        self.group_committed: dict[TopicPartition, int | None] = {}
        self.away = False
        self.asked: list[str] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def log_end(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self.asked.append("log_end")
        if self.away:
            raise RetryableError("the broker is away")
        return {tp: self.ends[tp] for tp in tps}

    def committed(self, tp: TopicPartition) -> int | None:
        self.asked.append(f"committed:{tp.partition}")
        return self.group_committed.get(tp)


def make(
    config: ConsumerHealthConfig | None = None,
) -> tuple[ConsumerWatch, FakeConsumer, FakeClock, CollectorRegistry]:
    clock, consumer, registry = FakeClock(), FakeConsumer(), CollectorRegistry()
    cfg = config or ConsumerHealthConfig(stalled_polls=30, lag_every=10, lag_checks=3, lag_floor=100)
    watch = ConsumerWatch(consumer, "g", clock, registry, cfg, poll_timeout_s=1.0)  # type: ignore[arg-type]
    return watch, consumer, clock, registry


def lag(registry: CollectorRegistry, tp: TopicPartition) -> float | None:
    return registry.get_sample_value(
        "vigil_consumer_lag_records", {"group": "g", "topic": tp.topic, "partition": str(tp.partition)}
    )


def test_polling_that_stalls_fails_health_except_during_a_broker_outage() -> None:
    watch, _, clock, registry = make()
    watch.polled({})
    clock.advance(30.0)  # exactly 30 poll timeouts: not yet
    assert watch.health(outage=False)["ok"] is True
    clock.advance(0.5)
    health = watch.health(outage=False)
    assert health["ok"] is False and health["poll_stalled"] is True and health["last_poll_age_s"] == 30.5
    assert watch.health(outage=True)["ok"] is True  # waiting out an outage is not a stall
    watch.polled({})
    assert watch.health(outage=False)["ok"] is True
    assert registry.get_sample_value("vigil_consumer_last_poll_timestamp_seconds", {"group": "g"}) == clock.now()


def test_a_consumer_never_polling_after_start_is_stalled_too() -> None:
    watch, _, clock, _ = make()
    clock.advance(31.0)
    assert watch.health(outage=False)["poll_stalled"] is True


def test_lag_per_partition_against_committed_offsets_measured_every_lag_every() -> None:
    watch, consumer, clock, registry = make()
    consumer.ends = {A: 500, B: 40}
    watch.polled({A: 200, B: 45})  # B: the log end known is behind the commit (Tansu): clamped at 0
    assert (lag(registry, A), lag(registry, B)) == (300, 0)
    consumer.ends = {A: 900, B: 50}
    clock.advance(5.0)
    watch.polled({A: 200, B: 45})
    assert lag(registry, A) == 300 and consumer.asked.count("log_end") == 1  # not due yet
    clock.advance(5.0)
    watch.polled({A: 200, B: 45})
    assert (lag(registry, A), lag(registry, B)) == (700, 5)
    assert watch.health(outage=False)["lag"] == 705


def test_a_partition_this_member_never_committed_is_measured_from_the_group_s_offset() -> None:
    watch, consumer, clock, registry = make()
    consumer.ends = {A: 500, B: 40}
    consumer.group_committed = {A: 100}  # B: the group never committed it: no lag series
    watch.polled({})
    assert (lag(registry, A), lag(registry, B)) == (400, None)
    consumer.ends[B] = 0
    clock.advance(10.0)
    watch.polled({})
    assert lag(registry, B) == 0  # nothing in it: nothing to lag behind
    clock.advance(10.0)
    watch.polled({})
    assert consumer.asked.count("committed:0") == 1  # asked once per assignment, not every time
    consumer.assigned = {B}
    clock.advance(10.0)
    watch.polled({})
    consumer.assigned = {A, B}  # back after a rebalance: another member may have committed it meanwhile
    consumer.group_committed = {A: 450}
    clock.advance(10.0)
    watch.polled({})
    assert consumer.asked.count("committed:0") == 2 and lag(registry, A) == 50


def test_revoked_partitions_lose_their_series_and_an_unreachable_broker_changes_nothing() -> None:
    watch, consumer, clock, registry = make()
    consumer.ends = {A: 10, B: 10}
    watch.polled({A: 5, B: 5})
    consumer.assigned = {A}
    clock.advance(10.0)
    watch.polled({A: 5})
    assert (lag(registry, A), lag(registry, B)) == (5, None)
    consumer.away = True
    clock.advance(10.0)
    watch.polled({A: 5})
    assert lag(registry, A) == 5 and watch.health(outage=True)["lag"] == 5


def test_lag_that_keeps_growing_above_the_floor_fails_health_until_it_stops() -> None:
    watch, consumer, clock, _ = make()  # 3 checks in a row, floor 100
    for end in (150, 250, 350):  # grew twice: not yet
        consumer.ends = {A: end, B: 0}
        watch.polled({A: 0, B: 0})
        clock.advance(10.0)
        assert watch.health(outage=False)["ok"] is True
    consumer.ends = {A: 450, B: 0}
    watch.polled({A: 0, B: 0})
    health = watch.health(outage=False)
    assert health["ok"] is False and health["lag_growing"] is True and health["lag"] == 450
    clock.advance(10.0)
    watch.polled({A: 200, B: 0})  # caught up some: 250 < 450
    assert watch.health(outage=False)["ok"] is True


@pytest.mark.parametrize(
    ("seen", "checks", "floor", "growing"),
    [
        ([1, 2, 3, 4], 3, 0, True),
        ([1, 2, 3], 3, 0, False),  # needs checks + 1 measurements
        ([1, 2, 2, 4], 3, 0, False),  # flat once
        ([5, 1, 2, 3, 4], 3, 0, True),  # only the last checks + 1 count
        ([1, 2, 3, 4], 3, 4, False),  # not above the floor
        ([1, 2, 3, 4], 0, 0, False),  # off
    ],
)
def test_lag_trend(seen: list[int], checks: int, floor: int, growing: bool) -> None:
    trend = LagTrend(checks, floor)
    for value in seen:
        trend.add(value)
    assert trend.growing() is growing
