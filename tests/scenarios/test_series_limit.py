"""A 5 MB telemetry record naming 100,000 new series, through analytics and alerting on the memory bus.

Issue 14 item 6: before the series limits this one record grew analytics from 553 to 100,552 series
and its snapshot to 34 MB. Now the host keeps at most ``series_limit.per_host`` series, the excess
samples are dropped and counted, the snapshot stays small, and ONE alert names the host and limit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.notifiers import DeliveryResult, Notification
from vigil.alerting.service import AlertingService
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import encode
from vigil.events import TelemetryBatch, series_key
from vigil.topics import Topics

T0 = 1_767_225_600.0
GPU_METRICS = ("gpu_temperature_celsius", "gpu_power_watts", "gpu_utilization_ratio", "gpu_sm_clock_hertz")


def normal(host: str, t: int) -> TelemetryBatch:
    """What a real host sends each tick: 8 GPUs x a few metrics."""
    keys = tuple(series_key(m, {"gpu_index": str(g)}) for g in range(8) for m in GPU_METRICS)
    return TelemetryBatch(host, "c1", np.array([T0 + t]), keys, np.full((1, len(keys)), 50.0))


def bomb(host: str, t: int, series: int = 100_000) -> TelemetryBatch:
    """One record whose series carry a per-request label: every key is new."""
    keys = tuple(series_key("http_request_seconds", {"request_id": f"req-{i:09d}-{t:06d}"}) for i in range(series))
    return TelemetryBatch(host, "c1", np.array([T0 + t]), keys, np.ones((1, series)))


class Pager:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, notification: Notification) -> DeliveryResult:
        self.sent.append(notification.to_json())
        return DeliveryResult.delivered()

    def close(self) -> None:
        return None


def test_a_5mb_record_of_100k_new_series_stays_at_the_limit_and_pages_once(tmp_path: Path) -> None:
    bus, topics, clock = MemoryBus(), Topics(), FakeClock(T0)
    bus.create_topics({topics.telemetry: 2, topics.logs: 1, topics.training: 1})
    a_reg, pager = CollectorRegistry(), Pager()
    analytics = AnalyticsService(bus, topics, AnalyticsConfig(), clock, a_reg, tmp_path / "state")
    alerting = AlertingService(
        bus,
        topics,
        AlertingConfig.model_validate({"notifiers": [{"type": "log", "name": "pager"}]}),
        clock,
        CollectorRegistry(),
        tmp_path / "alerts.db",
        notifiers={"pager": pager},
    )
    producer = bus.producer()
    record = encode(bomb("node-3", 5))
    assert len(record) > 5_000_000  # a real 5 MB record
    for t in range(5):
        for host in ("node-1", "node-3"):
            producer.send(topics.telemetry, encode(normal(host, t)), key=host.encode())
    producer.send(topics.telemetry, record, key=b"node-3")
    producer.send(topics.telemetry, encode(bomb("node-3", 6)), key=b"node-3")  # and again: no second page
    for t in range(7, 10):
        for host in ("node-1", "node-3"):
            producer.send(topics.telemetry, encode(normal(host, t)), key=host.encode())
    while analytics.step(0):
        pass
    analytics.checkpoint()
    while alerting.step(0):
        pass
    clock.advance(30)  # a warning waits group_wait before its first page
    alerting.step(0)
    alerting.dispatcher.drain_once()

    limit = 4096  # the default per-host limit
    assert analytics.health()["series"] == limit + 32  # node-3 at its limit, node-1's 32 series untouched
    assert a_reg.get_sample_value("vigil_analytics_series") == limit + 32
    dropped = a_reg.get_sample_value("vigil_analytics_samples_dropped_total", {"reason": "host_series_limit"})
    assert dropped == 200_000 - (limit - 32)
    snapshots = sum(p.stat().st_size for p in (tmp_path / "state").glob("*.snap"))
    assert snapshots < 2_000_000, f"snapshots hold {snapshots} bytes"

    assert len(pager.sent) == 1
    page = pager.sent[0]
    assert page["members"][0]["labels"] == {
        "alertname": "SeriesLimitExceeded",
        "cluster": "c1",
        "host": "node-3",
        "severity": "warning",
    }
    assert f"per-host series limit of {limit}" in page["summary"]
    assert json.loads(page["custom_details"]["reason"])["limit"] == limit
    assert AnalyticsConfig().series_limit.per_host == limit
    analytics.close()
    alerting.close()
