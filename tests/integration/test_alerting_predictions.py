"""A Prediction on the real broker becomes an early-warning alert: in the API and at a webhook receiver.

Everything is real on 127.0.0.1: the embedded Tansu broker, the alerting service's consumer group
over both topics, its HTTP API (uvicorn) and a webhook receiver (http.server).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.service import AlertingService

from tests.integration.test_alerting_http import Receiver
from vigil.bus.kafka import KafkaBus
from vigil.clock import SystemClock
from vigil.codec import encode
from vigil.config import validate
from vigil.events import Prediction
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


def wait_for(probe: Callable[[], T], timeout_s: float = 30.0) -> T:
    """Poll until ``probe`` returns something truthy (the consumer group join takes a few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def gpu_risk(p: float, ts: float) -> Prediction:
    return Prediction(
        ts=ts,
        predictor="gpu_risk",
        entity="gpu:node-4/6",
        kind="gpu",
        probability=p,
        horizon_s=7 * 86400.0,
        labels={"cluster": "dc1", "host": "node-4", "gpu_index": "6", "gpu_serial": "1650921000777"},
        evidence={"remap_failure": 6.0, "xid": 1.4, "sbe_rate": 0.9, "lemon_score": 0.5, "repeat_offender": False},
    )


def test_prediction_on_the_broker_ends_as_an_alert_and_a_webhook(
    kafka_bus: KafkaBus, unique: str, tmp_path: Path, receiver: Receiver
) -> None:
    topics = Topics(prefix=f"pred{unique}")
    kafka_bus.create_topics({s.name: s.partitions for s in topics.all()} | {topics["predictions"].dlq: 1})
    config = validate(
        AlertingConfig,
        {
            "group": f"alerting-{unique}",
            "notifiers": [{"type": "webhook", "url": receiver.url, "name": "hook"}],
            # early warnings are not paged by default; this receiver asks for them, without waiting
            "receivers": [{"name": "warnings", "notifiers": ["hook"]}],
            "route": {"receiver": "warnings", "group_wait": "0s", "group_interval": "1s"},
        },
    )
    registry = CollectorRegistry()
    svc = AlertingService(kafka_bus, topics, config, SystemClock(), registry, tmp_path / "alerts.db")
    producer = kafka_bus.producer()
    now = time.time()
    producer.send(topics.predictions, b"not an event", key=b"gpu:node-4/6")
    producer.send(topics.predictions, encode(gpu_risk(0.73, now)), key=b"gpu:node-4/6")
    producer.flush(10)

    stop = threading.Event()
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert svc.ready.wait(10.0) and svc.api_port
        with httpx.Client(base_url=f"http://127.0.0.1:{svc.api_port}", timeout=5.0) as client:

            def alerts(status: str) -> list[dict[str, Any]]:
                body: list[dict[str, Any]] = client.get("/api/v1/alerts", params={"status": status}).json()["alerts"]
                return body

            firing = wait_for(lambda: alerts("firing"))
            assert [a["labels"]["alertname"] for a in firing] == ["GpuFailureRisk"]
            alert = firing[0]
            assert alert["labels"]["entity"] == "gpu:node-4/6" and alert["severity"] == "warning"
            assert alert["annotations"]["summary"] == "GPU 6 on node-4: 73% chance of failure within 7 days"
            assert alert["annotations"]["top_evidence"] == "remap_failure=6, xid=1.4, sbe_rate=0.9"
            assert "nvidia-smi -i 6 -q -d ROW_REMAPPER,ECC,PAGE_RETIREMENT" in alert["recommended_action"]

            pages = wait_for(lambda: receiver.payloads())
            assert [(p["reason"], p["action"]) for p in pages] == [("first", "trigger")]
            assert pages[0]["members"][0]["labels"]["entity"] == "gpu:node-4/6"
            assert pages[0]["summary"].endswith(alert["annotations"]["summary"])

            producer.send(topics.predictions, encode(gpu_risk(0.12, now + 60)), key=b"gpu:node-4/6")
            producer.flush(10)
            resolved = wait_for(lambda: alerts("resolved"))
            assert [a["fingerprint"] for a in resolved] == [alert["fingerprint"]]
            pages = wait_for(lambda: receiver.payloads()[1:] and receiver.payloads())
            assert [(p["reason"], p["action"]) for p in pages] == [("first", "trigger"), ("resolved", "resolve")]
            metrics = client.get("/metrics").text
    finally:
        stop.set()
        runner.join(15.0)
    assert not runner.is_alive()
    dlq_series = f'vigil_dead_letter_records_total{{reason="invalid_event",topic="{topics.predictions}"}} 1.0'
    assert dlq_series in metrics
    assert 'vigil_alerting_predictions_total{decision="invalid"} 1.0' in metrics
    dlq = kafka_bus.consumer([topics["predictions"].dlq], f"dlq-check-{unique}")
    try:
        records = wait_for(lambda: dlq.poll(0.5), timeout_s=30.0)
    finally:
        dlq.close()
    assert [(r.key, r.value) for r in records] == [(b"gpu:node-4/6", b"not an event")]
