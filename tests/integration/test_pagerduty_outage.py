"""A PagerDuty outage through the real alerting path: detections → SQLite outbox → dispatcher →
PagerDuty notifier → a loopback server playing the Events API v2 (contract-checked on every request).

PagerDuty answers 503 or drops the connection for ten minutes of a fake clock, then recovers: every
page is accepted exactly once after recovery, none is lost, and none is sent again once accepted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.service import AlertingService
from vigil.alerting.store import AlertStore

from tests.contract.test_pagerduty_contract import ACCEPTED, KEY, events_v2
from tests.notifier_fixtures import Answer, ContractServer
from tests.scenarios.test_alerting_service import det
from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import encode
from vigil.config import validate
from vigil.topics import Topics

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0
OUTAGE_S = 600.0


@pytest.fixture
def pd() -> Iterator[ContractServer]:
    with ContractServer(events_v2, ACCEPTED, path="/v2/enqueue").running() as server:
        yield server


def test_ten_minute_outage_then_every_page_exactly_once(tmp_path: Path, pd: ContractServer) -> None:
    clock = FakeClock(T0)
    bus, topics = MemoryBus(), Topics()
    config = validate(
        AlertingConfig,
        {
            "notifiers": [{"type": "pagerduty", "name": "pd", "routing_key": KEY, "url": pd.url, "timeout": "5s"}],
            "retry": {"initial_backoff": "1s", "max_backoff": "60s", "jitter_seed": 5},
        },
    )
    svc = AlertingService(bus, topics, config, clock, CollectorRegistry(), tmp_path / "alerts.db")
    producer = bus.producer()
    for host in ("node-1", "node-2", "node-3"):
        producer.send(topics.detections, encode(det(host=host)), key=host.encode())
    assert svc.step() == 3

    outage = [Answer(503, "unavailable"), Answer(0, drop=True)]  # alternate: 503, then refused mid-request
    while clock.now() < T0 + OUTAGE_S:
        pd.default = outage[int(clock.now() - T0) // 60 % 2]
        svc.dispatcher.drain_once()
        clock.advance(5.0)
    during = len(pd.seen)
    # Kept trying, backing off: the receiver is held after each failure, so it is probed about once per
    # backoff (at most 60 s) rather than sent every row; never silent for longer than that.
    assert during >= OUTAGE_S / 60 and all(s.status in (0, 503) for s in pd.seen)
    assert {r.state for r in AlertStore(svc.db_path).outbox()} == {"pending"}

    pd.default = ACCEPTED
    for _ in range(30):  # the longest backoff is 60 s: within two minutes every row is due again
        svc.dispatcher.drain_once()
        clock.advance(5.0)
    accepted = Counter(s.json()["dedup_key"] for s in pd.seen if s.status == 202)
    assert sorted(accepted.values()) == [1, 1, 1]  # each incident paged once, none lost
    assert all(s.violations == [] for s in pd.seen)
    assert len(pd.seen) == during + 3  # nothing sent after it was accepted
    rows = AlertStore(svc.db_path).outbox()
    assert [r.state for r in rows] == ["delivered"] * 3 and sum(r.attempts for r in rows) == during + 3
    svc.close()
