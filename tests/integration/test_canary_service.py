"""The canary service on the real broker: every round of every probe reaches the results topic, the
wrong, slow and malformed ones included, each with its reason; a failed judgement is a detection;
a remediation run that touched the model starts a round at once; a broker outage delays results and
loses none."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.canary.config import CanaryConfig
from vigil.alerting.canary.service import CanaryService
from vigil.alerting.canary.spec import Probe, load_text

from tests.canary_servers import FakeModelServer, fake_model_server
from vigil.bus.kafka import KafkaBus
from vigil.bus.memory import MemoryBus
from vigil.clock import SystemClock
from vigil.codec import decode, encode
from vigil.events import Detection, ProbeResult, RemediationRun, StepState
from vigil.topics import Topics

pytestmark = pytest.mark.integration

ITEMS = """    items:
      - {id: a, inputs: [{name: x, datatype: FP32, shape: [1, 1], data: [3.0]}], expect: {equals: 3}}
      - {id: b, inputs: [{name: x, datatype: FP32, shape: [1, 1], data: [5.0]}], expect: {equals: 5}}
"""


def probe(name: str, url: str, interval: str = "300ms") -> Probe:
    text = f"""probes:
  - name: {name}
    protocol: oip_v2
    endpoint: {url}
    model: m
    schedule: {{interval: {interval}, timeout: 400ms}}
    criteria: {{window: 2}}
{ITEMS}"""
    return load_text(text, f"{name}.yaml")[0]


@pytest.fixture
def servers() -> Iterator[dict[str, FakeModelServer]]:
    with ExitStack() as stack:
        found = {}
        for mode in ("good", "wrong", "slow", "malformed"):
            found[mode] = stack.enter_context(fake_model_server())
            found[mode].mode, found[mode].delay = mode, 1.0
        yield found


def read_all(bus: KafkaBus, topic: str, group: str, expect: int, timeout: float = 20.0) -> list[object]:
    consumer = bus.consumer([topic], group)
    out: list[object] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expect:
            out += [decode(r.value) for r in consumer.poll(0.5)]
        end = time.monotonic() + 2.0  # anything beyond what was expected (a duplicate) shows too
        while time.monotonic() < end:
            out += [decode(r.value) for r in consumer.poll(0.3)]
    finally:
        consumer.close()
    return out


def rounds_counted(registry: CollectorRegistry) -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in registry.collect():
        if metric.name == "vigil_canary_rounds":
            for s in metric.samples:
                if s.name.endswith("_total"):
                    counts[s.labels["probe"]] += int(s.value)
    return counts


def test_faulty_servers_lose_no_round_and_each_says_why(
    servers: dict[str, FakeModelServer], kafka_bus: KafkaBus, unique: str
) -> None:
    topics = Topics(f"t{unique}")
    kafka_bus.create_topics({t.name: 1 for t in topics.all()})
    probes = [probe(mode, server.url) for mode, server in servers.items()]
    registry, stop = CollectorRegistry(), threading.Event()
    service = CanaryService(kafka_bus, topics, CanaryConfig(group=f"g{unique}"), SystemClock(), registry, "c1", probes)
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 30  # a slow answer takes the client's timeout: 2 rounds are seconds apart
    while time.monotonic() < deadline and not all(rounds_counted(registry)[m] >= 2 for m in servers):
        time.sleep(0.2)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    counted = rounds_counted(registry)
    assert all(counted[m] >= 2 for m in servers), counted
    # Prometheus: the pass ratio per model version, item latencies of answered items only.
    assert registry.get_sample_value("vigil_canary_pass_ratio", {"probe": "good", "arm": "serving",
                                                                 "version": "v-default"}) == 1.0
    assert registry.get_sample_value("vigil_canary_pass_ratio", {"probe": "wrong", "arm": "serving",
                                                                 "version": "v-default"}) == 0.0
    latency = "vigil_canary_item_latency_seconds_count"
    assert registry.get_sample_value(latency, {"probe": "good", "arm": "serving"}) == 2 * counted["good"]  # 2 a round
    assert registry.get_sample_value(latency, {"probe": "slow", "arm": "serving"}) in (None, 0.0)  # no service time
    results = read_all(kafka_bus, topics.name("probes"), f"r{unique}", sum(counted.values()))
    published = Counter(r.probe for r in results if isinstance(r, ProbeResult))
    assert published == counted  # every round, once
    reasons = {r.probe: r.items[0].reason for r in results if isinstance(r, ProbeResult)}
    assert reasons == {"good": "", "wrong": "expected 3, got '4'", "slow": "timeout after 0.4s",
                       "malformed": "malformed JSON (HTTP 200): '<html>upstream error</html>'"}
    detections = read_all(kafka_bus, topics.detections, f"d{unique}", 4)
    firing = {d.labels["probe"] for d in detections if isinstance(d, Detection) and d.decision == "firing"}
    assert firing == {"wrong", "slow", "malformed"}
    [failed] = [d for d in detections if isinstance(d, Detection) and d.labels["probe"] == "wrong"
                and d.decision == "firing"]
    assert failed.labels["canary"] == "endpoint" and "expected 3, got '4'" in failed.summary


def test_a_remediation_that_touched_the_model_starts_a_round_at_once(kafka_bus: KafkaBus, unique: str) -> None:
    topics = Topics(f"t{unique}")
    kafka_bus.create_topics({t.name: 1 for t in topics.all()})
    with fake_model_server() as server:
        probes = [probe("digits", server.url, interval="1h")]
        config = CanaryConfig(group=f"g{unique}")
        registry = CollectorRegistry()
        service = CanaryService(kafka_bus, topics, config, SystemClock(), registry, "c1", probes)
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,))
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not rounds_counted(registry):  # the scheduled round is over
                time.sleep(0.1)
            first = len([r for r in server.requests if r[1].endswith("/infer")])
            assert first > 0
            steps = (StepState("rollback", "succeeded"),)
            labels = {"probe": "digits", "model": "m"}
            run = RemediationRun(time.time(), "rr-1", "canary-model-rollback", "k", steps, "", "vigil", "succeeded",
                                 "execute", 1, labels)
            producer = kafka_bus.producer()
            producer.send(topics.name("remediation"), encode(run), key=b"rr-1")
            producer.flush()
            producer.close()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len([r for r in server.requests if r[1].endswith("/infer")]) <= first:
                time.sleep(0.1)
        finally:
            stop.set()
            thread.join(30)
    results = read_all(kafka_bus, topics.name("probes"), f"r{unique}", 2)
    assert [r.trigger for r in results if isinstance(r, ProbeResult)] == ["schedule", "remediation"]


def test_a_broker_outage_delays_results_and_loses_none(tmp_path: Path) -> None:
    bus, topics = MemoryBus(), Topics("m")
    with fake_model_server() as server:
        registry = CollectorRegistry()
        service = CanaryService(bus, topics, CanaryConfig(), SystemClock(), registry, "c1", [probe("p", server.url)])
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,))
        thread.start()
        time.sleep(1.0)
        bus.available = False
        time.sleep(2.5)
        assert service.health()["pending"] > 0 and service.health()["bus_ok"] is False
        bus.available = True
        time.sleep(3.0)
        stop.set()
        thread.join(30)
    published = [decode(r.value) for r in bus.records(topics.name("probes"))]
    numbers = [r.round for r in published if isinstance(r, ProbeResult)]
    assert numbers == list(range(1, rounds_counted(registry)["p"] + 1))  # every round, once, in order
