"""Analytics and alerting on the in-memory bus: one bad record never stops them, and a broker that goes
away mid-batch costs a replay from the last checkpoint, never a lost or doubled page."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError
from vigil.alerting.service import AlertingService

from tests.scenarios.test_alerting_service import Harness as AlertingHarness
from tests.scenarios.test_alerting_service import det
from tests.scenarios.test_analytics_service import T0, alerts, step, telemetry, xid
from tests.scenarios.test_analytics_service import Harness as AnalyticsHarness
from vigil.bus import Record
from vigil.codec import encode
from vigil.errors import RetryableError
from vigil.events import Detection, LogEvent

POISON_TS = "9999-12-31T23:59:59-14:00"  # valid ISO-8601; a year-10000 instant once rendered in UTC


def poison_detection() -> bytes:
    body = json.loads(encode(det(host="node-9")))
    body["ts"] = POISON_TS
    return json.dumps(body).encode()


def dlq(bus: object, topic: str) -> list[Record]:
    return bus.records(topic + ".dlq")  # type: ignore[attr-defined, no-any-return]


# ---------------------------------------------------------------------------------------------- alerting


def test_alerting_dead_letters_a_detection_it_cannot_render_and_pages_the_next(tmp_path: Path) -> None:
    h = AlertingHarness(tmp_path)
    svc = h.service()
    producer = h.bus.producer()
    producer.send(h.topics.detections, poison_detection(), key=b"poison")
    h.publish(det(host="node-1"))
    assert svc.step() == 2
    [letter] = dlq(h.bus, h.topics.detections)
    assert letter.value == poison_detection()
    assert dict(letter.headers)["vigil.error.reason"] in {b"handler_error", b"invalid_event"}
    pages = [(row.notifier, row.reason, row.payload["members"][0]["labels"]["host"]) for row in h.store().outbox()]
    assert pages == [("hook", "first", "node-1"), ("log", "first", "node-1")]
    assert {a.labels["host"] for a in h.alerts_on_topic()} == {"node-1"}
    # Committed past both: a restart neither crashes on the poison record again nor pages twice.
    svc._commits.close(commit=False)
    again = h.service(CollectorRegistry())
    assert again.step() == 0


def test_alerting_isolates_any_exception_raised_while_handling_one_record(tmp_path: Path) -> None:
    h = AlertingHarness(tmp_path)
    svc = h.service()
    ingest = svc.engine.ingest

    def flaky(candidates: list[Any]) -> Any:  # a stage that raises on one alert's odd labels
        if any(c.alert.labels["host"] == "node-2" for c in candidates):
            raise KeyError("gpu_index")
        return ingest(candidates)

    svc.engine.ingest = flaky  # type: ignore[method-assign]
    h.publish(det(host="node-1"), det(host="node-2"), det(host="node-3"))
    assert svc.step() == 3
    assert {a.labels["host"] for a in h.alerts_on_topic()} == {"node-1", "node-3"}
    [letter] = dlq(h.bus, h.topics.detections)
    assert dict(letter.headers)["vigil.error.detail"].startswith(b"KeyError")
    assert h.metric("vigil_alerting_detections_total", decision="error") == 1
    assert h.metric("vigil_dead_letter_records_total", topic=h.topics.detections, reason="handler_error") == 1


def test_alerting_rewinds_after_a_failed_publish_and_pages_once(tmp_path: Path) -> None:
    h = AlertingHarness(tmp_path)
    svc = h.service()
    h.publish(det(host="node-1"))
    svc.step()
    h.publish(det(host="node-2"))
    poll = svc._consumer.poll

    def poll_then_broker_dies(timeout_s: float, max_records: int = 500) -> list[Record]:
        records = poll(timeout_s, max_records)
        h.bus.available = False  # stored in SQLite next, then the publish fails
        return records

    svc._consumer.poll = poll_then_broker_dies  # type: ignore[method-assign]
    with pytest.raises(RetryableError):  # the broker is away
        svc.step()
    svc._consumer.poll = poll  # type: ignore[method-assign]
    h.bus.available = True
    svc.rewind()
    svc.step()  # publishes the stored alert, replays node-2's detection: no_change
    # On the alerts topic at least once (a record held when the publish failed may be sent as well) ...
    assert {a.labels["host"] for a in h.alerts_on_topic()} == {"node-1", "node-2"}
    assert h.metric("vigil_alerting_detections_total", decision="no_change") == 1
    # ... and paged exactly once per notifier.
    firsts = sorted((row.notifier, row.payload["members"][0]["labels"]["host"]) for row in h.store().outbox())
    assert firsts == [("hook", "node-1"), ("hook", "node-2"), ("log", "node-1"), ("log", "node-2")]


def test_alerting_service_has_its_outage_in_health(tmp_path: Path) -> None:
    h = AlertingHarness(tmp_path)
    svc: AlertingService = h.service()
    assert svc.health()["bus_ok"] is True
    svc._outage.failed(RetryableError("broker away"))
    assert svc.health()["bus_ok"] is False and h.metric("vigil_bus_up") == 0


# ---------------------------------------------------------------------------------------------- analytics


def test_analytics_dead_letters_an_event_whose_scoring_raises_and_scores_the_next(tmp_path: Path) -> None:
    h = AnalyticsHarness(tmp_path)
    observe = h.service.engine.observe_event

    def flaky(stream: str, event: LogEvent, pid: int, now: float) -> list[Detection]:
        if event.code == 13:
            raise OverflowError("int too large")
        return observe(stream, event, pid, now)  # type: ignore[arg-type]

    h.service.engine.observe_event = flaky  # type: ignore[assignment, method-assign]
    h.send("logs", xid(13), "node-01")
    h.send("logs", xid(79, ts=T0 + 1), "node-01")
    assert alerts(h.run(0)) == [("GpuXidFatal", "firing")]
    [letter] = dlq(h.bus, h.topics.logs)
    assert dict(letter.headers)["vigil.error.detail"].startswith(b"OverflowError")


def test_analytics_dead_letters_only_the_telemetry_record_at_fault(tmp_path: Path) -> None:
    h = AnalyticsHarness(tmp_path)
    rng = np.random.default_rng(0)
    observe = h.service.engine.observe_telemetry

    def flaky(batches: list[tuple[int, object]]) -> list[Detection]:
        if any(getattr(b, "host", "") == "node-66" for _, b in batches):
            raise ValueError("shapes do not match")
        return observe(batches)  # type: ignore[arg-type]

    h.service.engine.observe_telemetry = flaky  # type: ignore[assignment, method-assign]
    for t in range(3):
        h.send("telemetry", telemetry("node-01", t, 60.0, rng), "node-01")
    h.send("telemetry", telemetry("node-66", 3, 60.0, rng), "node-66")
    h.run(0)
    assert [r.key for r in dlq(h.bus, h.topics.telemetry)] == [b"node-66"]
    assert h.metric("vigil_analytics_samples_total") == 3 * telemetry("node-01", 0, 60.0, rng).sample_count


def test_analytics_rewinds_to_its_last_checkpoint_after_a_failed_flush(tmp_path: Path) -> None:
    h = AnalyticsHarness(tmp_path, snapshot_every=5)
    h.send("logs", xid(79, gpu=1), "node-01")
    assert alerts(h.run(5)) == [("GpuXidFatal", "firing")]  # run() passed a checkpoint: committed
    h.send("logs", xid(79, gpu=2, ts=T0 + 6), "node-01")
    h.bus.available = False  # the detection below cannot be published
    h.clock.advance(5)
    with pytest.raises(RetryableError):  # the broker is away
        h.service.step(0)
    h.bus.available = True
    h.service.rewind()
    found = h.run(0)
    # GPU 2's record is replayed from the committed offset and detected once; GPU 1's is not replayed
    # (committed), and its state came back from the snapshot, so it does not fire again.
    assert [(d.labels["gpu_index"], d.decision) for d in found] == [("2", "firing")]
    assert h.service.health()["bus_ok"] is True


def test_a_broker_outage_is_not_idle_time_of_the_jobs(tmp_path: Path) -> None:
    h = AnalyticsHarness(tmp_path, snapshot_every=300)  # no checkpoint during the outage to notice it
    for n in range(20):
        h.send("training", step("job-a", 0, n, ts=T0 + n / 2), "job-a")
    assert h.run(0) == []
    h.bus.available = False  # two minutes away: every poll comes back empty
    for _ in range(120):
        h.clock.advance(1)
        h.service.step(0)
    h.bus.available = True
    assert h.run(0) == []  # the silence of the broker is not the job's: no hang was held for sending
    assert ("TrainingHang", "firing") in alerts(h.run(60, 1))  # the job's own silence still is


def test_a_failing_alert_store_is_retried_not_blamed_on_the_record(tmp_path: Path) -> None:
    h = AlertingHarness(tmp_path)
    svc = h.service()
    ingest = svc.engine.ingest

    def disk_full(*args: object, **kwargs: object) -> object:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    svc.engine.ingest = disk_full  # type: ignore[method-assign]
    h.publish(det(host="node-1"))
    with pytest.raises(RetryableError, match="disk is full"):
        svc.step()
    assert dlq(h.bus, h.topics.detections) == []
    svc.engine.ingest = ingest  # type: ignore[method-assign]
    svc.rewind()
    svc.step()
    assert {a.labels["host"] for a in h.alerts_on_topic()} == {"node-1"}
