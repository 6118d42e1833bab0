"""The agent's runtime on the in-memory bus: ticks, merged batches, hung and failing collectors,
error counting, health. (The real broker, outages and restarts: tests/integration/test_agent_broker.py.)"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from vigil.collectors.agent import Agent, AgentConfig
from vigil.collectors.base import Collector, CollectorContext, Item, Problem

from tests.agent_collectors import SEQUENCE, CounterCollector, CounterOptions
from vigil.bus.memory import MemoryBus
from vigil.codec import decode
from vigil.events import LogEvent, TelemetryBatch, TrainingStep
from vigil.topics import Topics

TOPICS = Topics()
CONTEXT = CollectorContext("node-1", "dc1")


class Failing:
    """Yields one sample and a Problem every run, and raises on every other run."""

    name = "failing"

    def __init__(self) -> None:
        self.runs = 0

    def collect(self) -> Iterator[Item]:
        self.runs += 1
        yield ("failing_value", float(self.runs))
        yield Problem("not_supported", "fan speed")
        if self.runs % 2 == 0:
            raise OSError("device went away")


class Hung:
    name = "hung"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def collect(self) -> Iterator[Item]:
        self.release.wait(30)
        yield ("hung_value", 1.0)


def counter(**options: Any) -> CounterCollector:
    return CounterCollector(CounterOptions(**options), CONTEXT)


def make_agent(tmp_path: Path, collectors: dict[str, Collector], settings: dict[str, Any], **agent: Any) -> Agent:
    config = AgentConfig.model_validate(
        {
            "host": "node-1",
            "tick": 0.1,
            "metrics_port": -1,
            "collectors": {name: {"module": "tests.agent_collectors", **spec} for name, spec in settings.items()},
            **agent,
        }
    )
    return Agent(config, collectors, cluster="dc1", topics=TOPICS, registry=CollectorRegistry(), spill_dir=tmp_path)


def run_for(agent: Agent, bus: MemoryBus, seconds: float) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(bus.producer, stop))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(15)
    assert not thread.is_alive()


def batches(bus: MemoryBus) -> list[TelemetryBatch]:
    out = []
    for record in bus.records(TOPICS.telemetry):
        batch = decode(record.value)
        assert isinstance(batch, TelemetryBatch)
        out.append(batch)
    return out


def value(batch: TelemetryBatch, key: str) -> float:
    return float(batch.values[0, batch.series.index(key)])


def errors(agent: Agent, collector: str, error: str) -> float:
    found = agent.metrics.registry.get_sample_value(
        "vigil_collector_errors_total", {"collector": collector, "error": error}
    )
    return found or 0.0


def test_one_batch_per_tick_merges_the_collectors_that_are_due(tmp_path: Path) -> None:
    bus = MemoryBus()
    agent = make_agent(
        tmp_path,
        {"every": counter(), "other": counter(series="other_sequence")},
        {"every": {"interval": 0.1}, "other": {"interval": 0.2}},
    )
    run_for(agent, bus, 1.5)
    got = batches(bus)
    assert len(got) >= 10
    ts = [float(b.ts[0]) for b in got]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)  # one batch per tick
    assert all(abs(t / 0.1 - round(t / 0.1)) < 1e-3 for t in ts)  # on the wall-clock grid (float epoch)
    assert all(b.host == "node-1" and b.cluster == "dc1" for b in got)
    merged = [b for b in got if len(b.series) == 2]
    assert abs(len(merged) - len(got) / 2) <= 1  # "other" is due every second tick, in the same batch
    assert [value(b, SEQUENCE) for b in got] == [float(i) for i in range(len(got))]
    assert [value(b, "other_sequence") for b in merged] == [float(i) for i in range(len(merged))]


def test_sequence_numbers_arrive_in_order_with_no_gap(tmp_path: Path) -> None:
    bus = MemoryBus()
    agent = make_agent(tmp_path, {"counter": counter()}, {"counter": {"interval": 0.1}})
    run_for(agent, bus, 1.2)
    seen = [value(b, SEQUENCE) for b in batches(bus)]
    assert seen == [float(i) for i in range(len(seen))] and len(seen) >= 8


def test_a_hung_collector_does_not_stall_the_others_and_is_counted_once(tmp_path: Path) -> None:
    bus = MemoryBus()
    release = threading.Event()
    agent = make_agent(
        tmp_path,
        {"counter": counter(), "hung": Hung(release)},
        {"counter": {"interval": 0.1}, "hung": {"interval": 0.1, "timeout": 0.3}},
    )
    thread = threading.Thread(target=run_for, args=(agent, bus, 1.5))
    thread.start()
    time.sleep(1.0)
    health = agent.health()
    assert health["collectors"]["hung"]["running_s"] > 0.5
    assert health["ok"]  # one stuck source leaves the agent healthy
    released_at = time.time()
    release.set()
    thread.join()
    seen = [value(b, SEQUENCE) for b in batches(bus) if SEQUENCE in b.series]
    assert seen == [float(i) for i in range(len(seen))] and len(seen) >= 10
    assert errors(agent, "hung", "timeout") == 1
    hung = [float(b.ts[0]) for b in batches(bus) if "hung_value" in b.series]
    assert hung and min(hung) >= released_at - 0.1  # the abandoned run is discarded; it runs again once free


def test_a_late_run_is_published_on_its_own_stamped_with_its_tick(tmp_path: Path) -> None:
    bus = MemoryBus()
    agent = make_agent(
        tmp_path,
        {"fast": counter(), "slow": counter(start=500, sleep=0.05)},
        {"fast": {"interval": 0.2}, "slow": {"interval": 0.2}},
        batch_wait=0.01,
    )
    run_for(agent, bus, 1.5)
    got = batches(bus)
    fast = {float(b.ts[0]) for b in got if value(b, SEQUENCE) < 500}
    slow = {float(b.ts[0]) for b in got if value(b, SEQUENCE) >= 500}
    assert len(slow) >= 4
    assert slow <= fast  # each late batch carries the tick its run started on


def test_problems_and_exceptions_are_counted_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    failing = Failing()
    agent = make_agent(tmp_path, {"failing": failing}, {"failing": {"interval": 0.1}})
    with caplog.at_level(logging.WARNING, logger="vigil.collectors.agent"):
        run_for(agent, bus, 1.2)
    runs = failing.runs
    assert runs >= 8
    assert errors(agent, "failing", "not_supported") == runs
    assert errors(agent, "failing", "OSError") == runs // 2
    lines = [r.getMessage() for r in caplog.records if "collector failing" in r.getMessage()]
    assert len(lines) == 2, lines  # one per distinct (collector, error)
    # the sample yielded before each exception is published
    assert [value(b, "failing_value") for b in batches(bus)] == [float(i) for i in range(1, runs + 1)]


def test_log_events_go_to_the_logs_stream(tmp_path: Path) -> None:
    bus = MemoryBus()
    agent = make_agent(tmp_path, {"counter": counter(log_every=2)}, {"counter": {"interval": 0.1}})
    run_for(agent, bus, 1.0)
    events = [decode(r.value) for r in bus.records(TOPICS.logs)]
    assert events and all(isinstance(e, LogEvent) and e.code == 79 for e in events)
    assert all(r.key == b"node-1" for r in bus.records(TOPICS.logs))


class Stepping:
    """What the training_scrape collector yields: a TrainingStep when the job's step advances."""

    name = "training_scrape"

    def __init__(self) -> None:
        self.step = 0

    def collect(self) -> Iterator[Item]:
        self.step += 1
        yield TrainingStep(
            ts=time.time(), job_id="llm-7", rank=0, host="node-1", step=self.step, loss=2.0, step_time_s=0.5
        )


def test_training_steps_go_to_the_training_stream_keyed_by_job(tmp_path: Path) -> None:
    bus = MemoryBus()
    agent = make_agent(tmp_path, {"training_scrape": Stepping()}, {"training_scrape": {"interval": 0.1}})
    run_for(agent, bus, 1.0)
    records = bus.records(TOPICS.training)
    steps = [decode(r.value) for r in records]
    assert steps and all(isinstance(s, TrainingStep) for s in steps)
    assert [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert all(r.key == b"llm-7" for r in records)
    assert bus.records(TOPICS.logs) == []


def test_self_metrics_and_health_over_http(tmp_path: Path) -> None:
    bus = MemoryBus()
    agent = make_agent(tmp_path, {"counter": counter()}, {"counter": {"interval": 0.1}}, metrics_port=0)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(bus.producer, stop))
    thread.start()
    try:
        time.sleep(0.6)
        assert agent.server is not None
        base = f"http://127.0.0.1:{agent.server.port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            health = json.loads(response.read())
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        stop.set()
        thread.join(15)
    assert health["ok"] and health["collectors"]["counter"]["last_success"] > 0
    assert health["broker"]["connected"] and set(health["buffer"]) >= {"memory_records", "spill_bytes"}
    for name in (
        'vigil_agent_published_records_total{stream="telemetry"}',
        "vigil_agent_published_samples_total",
        'vigil_collector_samples_total{collector="counter"}',
        'vigil_collector_collect_seconds_bucket{collector="counter"',
        'vigil_collector_last_success_timestamp_seconds{collector="counter"}',
        'vigil_agent_buffer_records{where="spill"}',
        'vigil_agent_buffer_bytes{where="memory"}',
    ):
        assert name in text, name


def test_health_is_503_when_no_collector_succeeds(tmp_path: Path) -> None:
    class OnlyProblems:
        name = "broken"

        def collect(self) -> Iterator[Item]:
            yield Problem("permission", "/dev/nvidiactl")

    bus = MemoryBus()
    agent = make_agent(tmp_path, {"broken": OnlyProblems()}, {"broken": {"interval": 0.1}}, metrics_port=0)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(bus.producer, stop))
    thread.start()
    try:
        time.sleep(1.0)
        assert agent.server is not None
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(f"http://127.0.0.1:{agent.server.port}/healthz", timeout=5)
        assert failure.value.code == 503
        assert "no collector succeeded recently" in json.loads(failure.value.read())["problems"]
    finally:
        stop.set()
        thread.join(15)


def test_once_runs_every_collector_and_publishes_nothing(tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path, {"counter": counter(log_every=1), "failing": Failing()}, {"counter": {}, "failing": {}}
    )
    result = agent.once()
    assert result.batch is not None and set(result.batch.series) == {SEQUENCE, "failing_value"}
    assert len(result.logs) == 1
    assert ("failing", "not_supported", "fan speed") in result.errors
    assert not list(tmp_path.iterdir())  # no buffer, no spill


class SteppedClock:
    """The system clock plus an offset a test can step, as NTP does."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_the_ticks_realign_when_the_wall_clock_steps_back(tmp_path: Path) -> None:
    bus = MemoryBus()
    clock = SteppedClock()
    agent = make_agent(tmp_path, {"counter": counter()}, {"counter": {"interval": 0.1}})
    agent.clock = clock
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(bus.producer, stop))
    thread.start()
    time.sleep(0.6)
    clock.offset = -3600.0
    time.sleep(0.8)
    stop.set()
    thread.join(15)
    ts = [float(b.ts[0]) for b in batches(bus)]
    jump = next(i for i in range(1, len(ts)) if ts[i] < ts[i - 1])
    assert jump >= 3 and len(ts) - jump >= 5  # it kept ticking right after the step, on the new time
    assert 3599 < ts[jump - 1] - ts[jump] < 3601
    assert [value(b, SEQUENCE) for b in batches(bus)] == [float(i) for i in range(len(ts))]
