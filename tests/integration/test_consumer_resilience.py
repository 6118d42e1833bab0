"""On the real broker: a poison record does not stop alerting, and the simulator, analytics and alerting
carry on across a broker crash (kill -9 of Tansu, restarted on the same durable storage)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.service import AlertingService
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService
from vigil.collectors.sim import FleetSimulator, SimConfig, SimulatorRunner

from tests.integration.test_alerting_http import Receiver
from vigil.broker import EmbeddedBroker
from vigil.bus import TopicPartition
from vigil.bus.kafka import KafkaBus
from vigil.clock import SystemClock
from vigil.codec import encode
from vigil.config import KafkaConfig, validate
from vigil.events import Detection, LogEvent
from vigil.topics import Topics

pytestmark = pytest.mark.integration
T = TypeVar("T")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def wait_for(probe: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def detection(host: str, ts: float) -> Detection:
    return Detection(
        ts=ts,
        detector="threshold",
        series=f'gpu_temperature_celsius{{gpu_index="0",host="{host}"}}',
        labels={"alertname": "GpuOverTemperature", "cluster": "c1", "host": host, "gpu_index": "0"},
        score=93.0,
        decision="firing",
        severity="critical",
        reason={},
        window_start=ts - 30,
        window_end=ts,
    )


def alerting_config(group: str, receiver: Receiver) -> AlertingConfig:
    hook = {"type": "webhook", "url": receiver.url, "name": "hook"}
    return validate(AlertingConfig, {"group": group, "notifiers": [hook], "api": {"enabled": False}})


def pages(receiver: Receiver, key: str, value: str) -> list[dict[str, Any]]:
    return [p for p in receiver.payloads() if p["members"][0]["labels"].get(key) == value and p["reason"] == "first"]


def test_a_poison_detection_does_not_stop_alerting(
    kafka_bus: KafkaBus, unique: str, tmp_path: Path, receiver: Receiver
) -> None:
    topics = Topics(prefix=f"poison{unique}")
    kafka_bus.create_topics({s.name: s.partitions for s in topics.all()} | {topics["detections"].dlq: 1})
    now = time.time()
    poison = json.loads(encode(detection("node-9", now)))
    poison["ts"] = "9999-12-31T23:59:59-14:00"  # valid ISO-8601, year 10000 in UTC
    producer = kafka_bus.producer()
    producer.send(topics.detections, json.dumps(poison).encode(), key=b"poison")
    producer.send(topics.detections, encode(detection("node-1", now)), key=b"node-1")
    producer.flush(10)
    config = alerting_config(f"alerting-{unique}", receiver)
    svc = AlertingService(kafka_bus, topics, config, SystemClock(), CollectorRegistry(), tmp_path / "a.db")
    stop = threading.Event()
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: pages(receiver, "host", "node-1"), 60, "the page after the poison record")
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(15)
    dlq = kafka_bus.consumer([topics["detections"].dlq], f"dlq-{unique}")
    try:
        letters = wait_for(lambda: dlq.poll(0.5), 30, "the dead letter")
    finally:
        dlq.close()
    assert [r.value for r in letters] == [json.dumps(poison).encode()]
    assert pages(receiver, "host", "node-9") == []


def xid79(host: str, gpu: int) -> LogEvent:
    raw = "NVRM: Xid (PCI:0000:1b:00): 79, GPU has fallen off the bus"
    return LogEvent(time.time(), host, "c1", "xid", 79, raw, gpu_index=gpu)


@pytest.mark.slow
def test_sim_analytics_and_alerting_carry_on_across_a_broker_crash(
    tmp_path: Path, unique: str, receiver: Receiver
) -> None:
    broker = EmbeddedBroker(tmp_path / "data").start()  # durable: records and offsets survive the crash
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap], linger=0.001, request_timeout=5.0)
        bus = KafkaBus(kafka)
        topics = Topics(prefix=f"crash{unique}", partitions={"telemetry": 2, "logs": 1, "training": 1})
        bus.create_topics({s.name: s.partitions for s in topics.all()} | {s.dlq: 1 for s in topics.all()})
        clock = SystemClock()
        sim_metrics, analytics_metrics = CollectorRegistry(), CollectorRegistry()
        sim = FleetSimulator(SimConfig(nodes=2, gpus_per_node=2, schedule="none"), clock.now())
        runner = SimulatorRunner(sim, bus.producer, topics, clock, sim_metrics)
        config = AnalyticsConfig(group=f"a-{unique}", snapshot_every=1.0)
        analytics = AnalyticsService(bus, topics, config, clock, analytics_metrics, tmp_path / "s")
        alerting = AlertingService(
            bus, topics, alerting_config(f"b-{unique}", receiver), clock, CollectorRegistry(), tmp_path / "a.db"
        )
        for target in (runner.run, analytics.run, alerting.run):
            threads.append(threading.Thread(target=target, args=(stop,), daemon=True))
            threads[-1].start()
        agent = bus.producer()  # stands for a node agent reporting kernel log lines
        agent.send(topics.logs, encode(xid79("node-00", 1)), key=b"node-00")
        agent.flush(10)
        agent.close()
        wait_for(lambda: pages(receiver, "gpu_index", "1"), 90, "the page before the crash")
        logs = TopicPartition(topics.logs, 0)
        wait_for(lambda: analytics.commits.committed().get(logs), 30, "analytics to commit the XID")

        broker.kill("tansu")
        up = lambda registry: registry.get_sample_value("vigil_bus_up")  # noqa: E731
        wait_for(lambda: up(sim_metrics) == 0, 60, "the simulator to notice the broker is gone")
        ticks_at_crash = runner.ticks
        time.sleep(3)
        broker.start()
        wait_for(lambda: up(sim_metrics) == 1, 90, "the simulator to reconnect")

        agent = bus.producer()
        agent.send(topics.logs, encode(xid79("node-01", 0)), key=b"node-01")
        agent.flush(30)
        agent.close()
        wait_for(lambda: pages(receiver, "gpu_index", "0"), 120, "the page after the restart")
        assert all(t.is_alive() for t in threads), "no service exited"
        assert runner.ticks > ticks_at_crash
        assert len(pages(receiver, "gpu_index", "1")) == 1  # the replays after the crash paged nobody twice
        assert sim_metrics.get_sample_value("vigil_bus_outages_total") == 1
        # analytics resumed from its last checkpoint: its snapshots matched the committed offsets
        discarded = "vigil_analytics_snapshots_discarded_total"
        assert not analytics_metrics.get_sample_value(discarded, {"topic": topics.logs})
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        broker.stop()
