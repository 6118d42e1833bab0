"""1,000 malformed records per topic on the real broker: no crash, all dead-lettered and counted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.service import AlertingService
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService

from vigil.bus.kafka import KafkaBus
from vigil.clock import SystemClock
from vigil.codec import encode
from vigil.events import Detection, LogEvent, TelemetryBatch, TrainingStep
from vigil.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOW = time.time()
PER_TOPIC = 1000


def malformed(kind: str, rng: np.random.Generator) -> list[bytes]:
    """A quarter each: random bytes, unknown schema version, naive timestamps, NaN where a count belongs."""
    good = {
        "telemetry": encode(TelemetryBatch("h", "c", np.array([NOW]), ("a_total", "b"), np.array([[1.0, 2.0]]))),
        "logs": encode(LogEvent(NOW, "h", "c", "xid", 79, "raw")),
        "training": encode(TrainingStep(NOW, "job", 1, "h", 10, 1.0, 0.5)),
        "detections": encode(Detection(NOW, "d", "s", {}, 1.0, "firing", "info", {}, NOW, NOW)),
    }[kind]
    out: list[bytes] = []
    for i in range(PER_TOPIC):
        flavour = i % 4
        if flavour == 0:
            out.append(rng.bytes(int(rng.integers(1, 300))))
        elif kind == "detections":
            body = json.loads(good)
            if flavour == 1:
                body["v"] = 7
            elif flavour == 2:
                body["ts"] = "2026-05-01T12:00:00"
            else:
                body["score"] = "NaN"
            out.append(json.dumps(body).encode())
        else:
            body = msgpack.unpackb(good)
            if flavour == 1:
                body["v"] = 7
            elif flavour == 2:
                body["ts"] = "2026-05-01T12:00:00"
            elif kind == "telemetry":
                body["values"] = np.array([[np.nan, 2.0]]).tobytes()
            else:
                body["step" if kind == "training" else "code"] = float("nan")
            out.append(bytes(msgpack.packb(body)))
    return out


def count(bus: KafkaBus, topic: str, group: str, want: int, timeout_s: float = 60) -> int:
    consumer = bus.consumer([topic], group)
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < want and time.monotonic() < deadline:
        seen += len(consumer.poll(0.5))
    consumer.close()
    return seen


def test_malformed_records_are_dead_lettered_and_counted(kafka_bus: KafkaBus, unique: str, tmp_path: Path) -> None:
    topics = Topics(prefix=f"dlq{unique}")
    kafka_bus.create_topics({s.name: s.partitions for s in topics.all()} | {s.dlq: 1 for s in topics.all()})
    rng = np.random.default_rng(7)
    producer = kafka_bus.producer()
    for stream in ("telemetry", "logs", "training", "detections"):
        for value in malformed(stream, rng):
            producer.send(topics.name(stream), value, key=b"h")
    producer.flush(30)

    a_reg, b_reg = CollectorRegistry(), CollectorRegistry()
    analytics = AnalyticsService(kafka_bus, topics, AnalyticsConfig(), SystemClock(), a_reg, tmp_path / "state")
    alerting = AlertingService(kafka_bus, topics, AlertingConfig(), SystemClock(), b_reg, tmp_path / "alerts.db")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        analytics.step(0.5)
        alerting.step(0.5)
        done = [
            a_reg.get_sample_value("vigil_dead_letter_records_total", {"topic": topics.name(s), "reason": r}) or 0
            for s in ("telemetry", "logs", "training")
            for r in ("invalid_event",)
        ]
        if sum(done) >= 3 * PER_TOPIC:
            break
    analytics.close()
    alerting.close()

    for stream, registry in (("telemetry", a_reg), ("logs", a_reg), ("training", a_reg), ("detections", b_reg)):
        name = topics.name(stream)
        counted = registry.get_sample_value(
            "vigil_dead_letter_records_total", {"topic": name, "reason": "invalid_event"}
        )
        assert counted == PER_TOPIC, f"{name}: counted {counted}"
        assert count(kafka_bus, topics[stream].dlq, f"check-{unique}-{stream}", PER_TOPIC) == PER_TOPIC
