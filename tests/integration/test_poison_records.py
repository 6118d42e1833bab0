"""The three poison records of issue 14 on the real embedded broker.

Each lands in its topic's dead-letter topic with the reason in a header and is counted; the
services keep consuming, and the valid records sent after them still page (alerting) or detect
(analytics). Before the codec range-checked them, alerting raised on the first two in every
``step`` without committing, so no page ever left again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.notifiers import DeliveryResult, Notification
from vigil.alerting.service import AlertingService
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService

from tests import poison
from vigil.bus import Record
from vigil.bus.kafka import KafkaBus
from vigil.clock import SystemClock
from vigil.codec import encode
from vigil.topics import Topics

pytestmark = pytest.mark.integration
NOW = time.time()


class Pager:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, notification: Notification) -> DeliveryResult:
        self.sent.append(notification.to_json())
        return DeliveryResult.delivered()

    def close(self) -> None:
        return None


def read_all(bus: KafkaBus, topic: str, group: str, want: int, timeout_s: float = 60) -> list[Record]:
    consumer = bus.consumer([topic], group)
    seen: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < want and time.monotonic() < deadline:
        seen += consumer.poll(0.5)
    consumer.close()
    return seen


def reasons(records: list[Record]) -> list[tuple[bytes, bytes]]:
    return [(dict(r.headers)["vigil.error.reason"], dict(r.headers)["vigil.error.detail"]) for r in records]


def test_poison_records_are_dead_lettered_on_the_broker_and_paging_goes_on(
    kafka_bus: KafkaBus, unique: str, tmp_path: Path
) -> None:
    topics = Topics(prefix=f"poison{unique}")
    kafka_bus.create_topics({s.name: s.partitions for s in topics.all()} | {s.dlq: 1 for s in topics.all()})
    producer = kafka_bus.producer()
    producer.send(topics.detections, poison.detection_year_10000(), key=b"node-1")
    producer.send(topics.predictions, poison.prediction_far_horizon(), key=b"fs:node-1:/data")
    producer.send(topics.logs, poison.log_event_huge_gpu(), key=b"node-1")
    producer.flush(30)
    producer.send(topics.detections, encode(poison.detection(ts=NOW)), key=b"node-1")
    producer.send(topics.logs, encode(poison.log_event(gpu_index=3, ts=NOW)), key=b"node-1")
    producer.flush(30)

    a_reg, b_reg, pager = CollectorRegistry(), CollectorRegistry(), Pager()
    config = AlertingConfig.model_validate(
        {"group": f"alerting-{unique}", "notifiers": [{"type": "log", "name": "pager"}]}
    )
    alerting = AlertingService(
        kafka_bus, topics, config, SystemClock(), b_reg, tmp_path / "alerts.db", notifiers={"pager": pager}
    )
    analytics = AnalyticsService(
        kafka_bus, topics, AnalyticsConfig(group=f"analytics-{unique}"), SystemClock(), a_reg, tmp_path / "state"
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(pager.sent) < 2:  # the thermal detection and XID 79's
        analytics.step(0.2)
        analytics.producer.flush()
        alerting.step(0.2)
        alerting.dispatcher.drain_once()
    analytics.close()
    alerting.close()

    labels = [p["members"][0]["labels"] for p in pager.sent]
    pages = sorted((a["alertname"], a.get("gpu_index")) for a in labels)
    assert pages == [("GpuXidFatal", "3"), ("gpu_thermal", "0")]
    when = b"'9999-12-31T23:59:59-14:00'"
    expected = {
        topics.detections: (b_reg, b"InvalidEvent: Detection.ts " + when + b" is outside 2000-01-01..2100-01-01"),
        topics.predictions: (b_reg, b"InvalidEvent: Prediction.horizon_s: 1000000000000.0 is outside 0..315360000"),
        topics.logs: (a_reg, b"InvalidEvent: LogEvent.gpu_index: %d is outside 0..255" % 2**63),
    }
    for topic, (registry, detail) in expected.items():
        dlq = read_all(kafka_bus, topic + ".dlq", f"check-{unique}-{topic}", 1)
        assert reasons(dlq) == [(b"invalid_event", detail)], topic
        assert (
            registry.get_sample_value("vigil_dead_letter_records_total", {"topic": topic, "reason": "invalid_event"})
            == 1
        )
