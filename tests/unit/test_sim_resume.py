"""A simulator killed and started again with the first run's start resumes its schedule.

It must not inject the schedule a second time: every fault keeps its id and start, an ended fault
is only republished as ground truth, a fault still due begins again under its old id, and step
numbers never go backwards.
"""

from __future__ import annotations

import threading

import pytest
from vigil.collectors.sim import FleetSimulator, SimConfig, SimulatorRunner

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode
from vigil.events import FaultInjection, LogEvent, TrainingStep, TrainingStepBatch
from vigil.topics import Topics

FAULTS = [
    {"kind": "xid48", "at": 5, "duration": 10, "host": "node-00", "gpu_index": 1},  # over before the kill
    {"kind": "thermal", "at": 18, "duration": 8, "host": "node-01", "gpu_index": 0},  # ends while nothing runs
    {"kind": "xid79", "at": 20, "duration": 20, "host": "node-01", "gpu_index": 3},  # running at the kill
    {"kind": "xid48", "at": 27, "duration": 10, "host": "node-00", "gpu_index": 2},  # due while nothing runs
    {"kind": "hang", "at": 45, "duration": 5},  # after the restart
]
CONFIG = SimConfig(nodes=2, gpus_per_node=4, faults=FAULTS)


class Killed(Exception):
    """Stands for SIGKILL: the run stops mid-tick, so nothing in its ``finally`` is published."""


def run_until_killed(bus: MemoryBus, topics: Topics, clock: FakeClock, start: float, kill_at: float) -> None:
    producer = bus.producer()
    runner = SimulatorRunner(FleetSimulator(CONFIG, start), lambda: producer, topics, clock)
    real_flush = producer.flush

    def flush(timeout_s: float | None = None) -> None:
        real_flush(timeout_s)
        if clock.now() >= kill_at:
            raise Killed

    producer.flush = flush  # type: ignore[method-assign]
    with pytest.raises(Killed):
        runner.run(threading.Event())


def events(bus: MemoryBus, topic: str, since: int = 0) -> list[object]:
    """The topic's events, a batch of training steps as its steps."""
    out: list[object] = []
    for record in bus.records(topic)[since:]:
        event = decode(record.value)
        out += event.steps() if isinstance(event, TrainingStepBatch) else [event]
    return out


def test_a_restarted_simulator_resumes_the_schedule_without_injecting_it_again() -> None:
    bus, topics, clock = MemoryBus(default_partitions=1), Topics(), FakeClock()
    start = clock.now()
    run_until_killed(bus, topics, clock, start, kill_at=start + 25)
    first_truth = len(bus.records(topics.groundtruth))
    first_logs = len(bus.records(topics.logs))
    first_steps = [e.step for e in events(bus, topics.training) if isinstance(e, TrainingStep)]

    clock.advance(4)  # down for 4 s: the thermal fault's end and the second xid48's start pass meanwhile
    resumed_at = clock.now()
    runner = SimulatorRunner(FleetSimulator(CONFIG, start), bus.producer, topics, clock)
    runner.run(threading.Event(), duration_s=60)

    truth = [e for e in events(bus, topics.groundtruth) if isinstance(e, FaultInjection)]
    by_id: dict[str, set[tuple[float, float | None]]] = {}
    for fault in truth:
        by_id.setdefault(fault.fault_id, set()).add((fault.start, fault.end))
    assert sorted(by_id) == ["f-0001-xid48", "f-0002-thermal", "f-0003-xid79", "f-0004-xid48", "f-0005-hang"]
    for fault_id, spec in zip(sorted(by_id), FAULTS, strict=True):
        begin = start + float(spec["at"])  # type: ignore[arg-type]
        assert {s for s, _ in by_id[fault_id]} == {begin}, fault_id  # one start: never re-injected later
        assert begin + float(spec["duration"]) in {e for _, e in by_id[fault_id]}, fault_id  # type: ignore[arg-type]

    # The restart's ground truth: the ended faults republished whole, the running and the missed ones begun again.
    resumed = [e for e in events(bus, topics.groundtruth, first_truth) if isinstance(e, FaultInjection)]
    assert [(f.fault_id, f.end is None) for f in resumed[:4]] == [
        ("f-0001-xid48", False),
        ("f-0002-thermal", False),
        ("f-0003-xid79", True),
        ("f-0004-xid48", True),
    ]
    logs = [e for e in events(bus, topics.logs, first_logs) if isinstance(e, LogEvent)]
    assert [(e.host, e.gpu_index, e.code) for e in logs] == [("node-01", 3, 79), ("node-00", 2, 48), ("node-00", 2, 63)]
    assert all(e.ts == resumed_at for e in logs)

    later_steps = [e for e in events(bus, topics.training) if isinstance(e, TrainingStep)][len(first_steps) :]
    assert later_steps and min(e.step for e in later_steps) > max(first_steps)
    assert min(e.ts for e in later_steps) > resumed_at


def test_a_simulator_started_on_time_does_not_resume() -> None:
    bus, topics, clock = MemoryBus(default_partitions=1), Topics(), FakeClock()
    runner = SimulatorRunner(FleetSimulator(CONFIG, clock.now()), bus.producer, topics, clock)
    runner.run(threading.Event(), duration_s=10)
    truth = [e for e in events(bus, topics.groundtruth) if isinstance(e, FaultInjection)]
    assert [(f.fault_id, f.end is None) for f in truth] == [("f-0001-xid48", True), ("f-0001-xid48", False)]
    steps = [e.step for e in events(bus, topics.training) if isinstance(e, TrainingStep)]
    assert min(steps) == 10_000
