"""The SDK's events are what analytics expects: a real PyTorch loop whose loss goes NaN pages once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService
from vigil.collectors.training import Reporter, ReporterOptions

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode
from vigil.events import Detection
from vigil.topics import Topics


def test_a_nan_loss_reported_by_the_sdk_fires_training_loss_non_finite(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    topics, bus = Topics(), MemoryBus()
    bus.create_topics({topics.telemetry: 1, topics.logs: 1, topics.training: 1})
    service = AnalyticsService(
        bus, topics, AnalyticsConfig(), FakeClock(1_767_225_600.0), CollectorRegistry(), tmp_path
    )
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Reporter(bus, job_id="sdk-job", cluster="c1", options=ReporterOptions(interval_s=60.0)) as reporter:
        for n in range(30):
            optimizer.zero_grad()
            x = torch.randn(16, 8)
            if n == 25:
                x[0, 0] = math.nan  # a bad batch: the loss goes NaN
            loss = model(x).pow(2).mean()
            loss.backward()
            optimizer.step()
            reporter.step(loss, batch_size=16, optimizer=optimizer)
    while service.step(0):
        pass
    found = [decode(r.value) for r in bus.records(topics.detections)]
    pages = [(d.labels["alertname"], d.decision, d.labels["job_id"]) for d in found if isinstance(d, Detection)]
    assert ("TrainingLossNonFinite", "firing", "sdk-job") in pages
    assert [p for p in pages if p[0] == "TrainingLossNonFinite"] == [("TrainingLossNonFinite", "firing", "sdk-job")]
