"""The runner publishes each event type to its topic with its key, on a fake clock, never sleeping."""

from __future__ import annotations

import threading
from collections import Counter

from prometheus_client import CollectorRegistry
from vigil.collectors.sim import FleetSimulator, SimConfig, SimulatorRunner

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode
from vigil.events import FaultInjection, LogEvent, TelemetryBatch, TrainingStepBatch
from vigil.topics import Topics

FAULTS = [
    {"kind": "xid79", "at": 3, "duration": 2, "host": "node-01", "gpu_index": 3},
    {"kind": "straggler", "at": 6, "rank": 3},  # still active when the runner stops
]


def make(config: SimConfig) -> tuple[SimulatorRunner, MemoryBus, Topics, FakeClock]:
    bus, topics, clock = MemoryBus(default_partitions=4), Topics(), FakeClock()
    runner = SimulatorRunner(FleetSimulator(config, clock.now()), bus.producer, topics, clock)
    return runner, bus, topics, clock


def test_run_publishes_to_the_right_topics_with_the_right_keys() -> None:
    runner, bus, topics, clock = make(SimConfig(nodes=2, gpus_per_node=4, spare_nodes=0, faults=FAULTS))
    start = clock.now()
    runner.run(threading.Event(), duration_s=10)
    assert runner.ticks == 11  # t = 0, 1, ..., 10
    assert clock.now() == start + 10

    telemetry = bus.records(topics.telemetry)
    assert len(telemetry) == 11 * 2
    for record in telemetry:
        batch = decode(record.value)
        assert isinstance(batch, TelemetryBatch) and record.key == batch.host.encode()
    assert Counter(r.key for r in telemetry) == {b"node-00": 11, b"node-01": 11}

    logs = [decode(r.value) for r in bus.records(topics.logs)]
    assert [(type(e), e.code) for e in logs if isinstance(e, LogEvent)] == [(LogEvent, 79)]
    assert [r.key for r in bus.records(topics.logs)] == [b"node-01"]

    training = bus.records(topics.training)
    assert training and all(r.key == b"job-0" for r in training)
    assert all(isinstance(decode(r.value), TrainingStepBatch) for r in training)  # one record per tick, all ranks

    truth = [f for r in bus.records(topics.groundtruth) if isinstance(f := decode(r.value), FaultInjection)]
    assert len(truth) == len(bus.records(topics.groundtruth))
    # Kafka orders records per key only: start before end for each fault_id.
    keyed = [(r.key, f.end is None) for r, f in zip(bus.records(topics.groundtruth), truth, strict=True)]
    assert sorted(keyed, key=lambda kv: kv[0] or b"") == [
        (b"f-0001-xid79", True),
        (b"f-0001-xid79", False),
        (b"f-0002-straggler", True),
        (b"f-0002-straggler", False),  # ended on exit
    ]


def test_run_stops_when_the_event_is_set() -> None:
    runner, bus, topics, _ = make(SimConfig(nodes=1, gpus_per_node=2, spare_nodes=0, schedule="none"))
    stop = threading.Event()
    stop.set()
    runner.run(stop)
    assert runner.ticks == 0 and bus.records(topics.telemetry) == []


def test_run_skips_ahead_after_a_long_stall() -> None:
    runner, bus, topics, clock = make(SimConfig(nodes=1, gpus_per_node=2, spare_nodes=0, schedule="none"))
    clock.advance(100)  # the process was suspended (or restarted) before it started ticking
    runner.run(threading.Event(), duration_s=102)  # the duration counts from the simulator's start
    stamps = [b.ts[0] for r in bus.records(topics.telemetry) if isinstance(b := decode(r.value), TelemetryBatch)]
    assert stamps and stamps[0] >= runner.sim.start + 90 and len(stamps) <= 5


def test_run_fast_publishes_without_sleeping_and_counts_samples() -> None:
    runner, bus, topics, clock = make(SimConfig(ticks_per_batch=10, spare_nodes=0, schedule="none"))
    before = clock.now()
    samples = runner.run_fast(25)
    assert clock.now() == before
    assert samples == 20 * 8 * (8 * 8 + 5)  # two full batches; the third is still filling
    samples += runner.run_fast(5)
    assert samples == 30 * 8 * 69
    batches = [decode(r.value) for r in bus.records(topics.telemetry)]
    stamps = [t for b in batches if isinstance(b, TelemetryBatch) for t in b.ts.tolist() if b.host == "node-00"]
    assert stamps == [before + k for k in range(30)]
    records = [decode(r.value) for r in bus.records(topics.training)]
    assert len(records) == 3  # one record per telemetry batch of 10 ticks, as the telemetry
    steps = sum(b.rows for b in records if isinstance(b, TrainingStepBatch))
    assert steps % 64 == 0 and 54 <= steps // 64 <= 59  # ~2 steps/s over 29 simulated seconds, every rank


class FlakyBus(MemoryBus):
    """A broker away for ``seconds`` of fake time from ``at``."""

    def __init__(self, clock: FakeClock, at: float, seconds: float) -> None:
        self.clock, self.start, self.end = clock, clock.now() + at, clock.now() + at + seconds
        self.failures = 0
        super().__init__(default_partitions=4)

    @property  # type: ignore[override]
    def available(self) -> bool:
        return not self.start <= self.clock.now() < self.end

    @available.setter
    def available(self, value: bool) -> None:
        return

    def check(self, what: str) -> None:
        self.failures += not self.available
        super().check(what)


def test_a_broker_outage_delays_ticks_but_loses_none() -> None:
    topics, clock, registry = Topics(), FakeClock(), CollectorRegistry()
    bus = FlakyBus(clock, at=5.5, seconds=40)
    sim = FleetSimulator(SimConfig(nodes=2, gpus_per_node=2, spare_nodes=0, schedule="none"), clock.now())
    runner = SimulatorRunner(sim, bus.producer, topics, clock, registry)
    runner.run(threading.Event(), duration_s=60)
    batches = [b for r in bus.records(topics.telemetry) if isinstance(b := decode(r.value), TelemetryBatch)]
    stamps = sorted(float(b.ts[0]) for b in batches)
    assert bus.failures > 0
    assert registry.get_sample_value("vigil_bus_outages_total") == 1
    assert (registry.get_sample_value("vigil_producer_renewals_total") or 0) >= 1
    # Every tick of both hosts arrived once the broker was back: the ones of the outage in a burst.
    expected = [runner.sim.start + k for k in range(61) for _ in range(2)]
    assert stamps == expected
    assert runner.outage.down_since is None
