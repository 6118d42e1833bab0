"""One receiver hanging past its timeout delays only itself (issue 14, item 4).

Everything is real on 127.0.0.1: the embedded Tansu broker, the alerting service's loop with its
per-receiver outbox workers, and two HTTP receivers (http.server). Receiver A accepts each request
and never answers while it hangs (the client gives up after its timeout, A never handled the
request); receiver B answers at once. B's latency is measured from the moment the alert's outbox
row was committed to the moment B received the notification.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.service import AlertingService
from vigil.alerting.store import AlertStore

from tests.integration.test_alerting_http import det
from tests.integration.test_alerting_predictions import wait_for
from vigil.bus.kafka import KafkaBus
from vigil.clock import SystemClock
from vigil.codec import encode
from vigil.config import validate
from vigil.topics import Topics

pytestmark = pytest.mark.integration
BURST = 12
TIMEOUT_S = 2.0  # A's timeout: on the old single dispatcher thread each of A's rows cost B this much


class TimedReceiver:
    """Records (fingerprint, arrival wall time) of each notification it answers; while ``hanging`` is
    set it holds each request unanswered until released, and records nothing."""

    def __init__(self) -> None:
        self.received: list[tuple[str, float]] = []
        self.hanging = threading.Event()
        self.released = threading.Event()
        self.hung = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if outer.hanging.is_set():
                    outer.hung += 1
                    outer.released.wait(60)
                    self.close_connection = True
                    return  # no response: the request was never handled
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((json.loads(body)["dedup_key"], time.time()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def fingerprints(self) -> list[str]:
        return [fp for fp, _ in self.received]


@pytest.fixture
def receivers() -> Iterator[tuple[TimedReceiver, TimedReceiver]]:
    pair = (TimedReceiver(), TimedReceiver())
    for r in pair:
        r.thread.start()
    yield pair
    for r in pair:
        r.released.set()
        r.server.shutdown()
        r.server.server_close()


def test_a_hanging_receiver_delays_only_itself_and_gets_everything_once_it_recovers(
    kafka_bus: KafkaBus, unique: str, tmp_path: Path, receivers: tuple[TimedReceiver, TimedReceiver]
) -> None:
    slow, healthy = receivers
    slow.hanging.set()
    topics = Topics(prefix=f"disp{unique}")
    kafka_bus.create_topics({s.name: s.partitions for s in topics.all()})
    config = validate(
        AlertingConfig,
        {
            "group": f"alerting-{unique}",
            "api": {"enabled": False},
            "notifiers": [
                {"type": "webhook", "name": "a", "url": slow.url, "timeout": f"{TIMEOUT_S}s"},
                {"type": "webhook", "name": "b", "url": healthy.url, "timeout": f"{TIMEOUT_S}s"},
            ],
            "retry": {"initial_backoff": "0.2s", "max_backoff": "1s", "jitter_seed": 7},
        },
    )
    db = tmp_path / "alerts.db"
    svc = AlertingService(kafka_bus, topics, config, SystemClock(), CollectorRegistry(), db)
    producer = kafka_bus.producer()
    now = time.time()
    for i in range(BURST):
        d = det(ts=now, host=f"node-{i:02d}")
        producer.send(topics.detections, encode(d), key=d.series.encode())
    producer.flush(10)
    stop = threading.Event()
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: len(healthy.received) >= BURST, timeout_s=60.0)
        assert slow.hung >= 1 and slow.received == []  # A was tried and hung all along
        created = {r.key: r.created_at for r in AlertStore(db).outbox() if r.notifier == "b"}
        latencies = sorted(at - created[fp] for fp, at in healthy.received)
        assert len(created) == BURST and sorted(healthy.fingerprints()) == sorted(created)
        assert latencies[-1] < 1.0, f"B waited behind A: latencies {latencies}"

        slow.hanging.clear()
        slow.released.set()  # A recovers
        assert wait_for(lambda: len(slow.received) >= BURST, timeout_s=60.0)
        assert wait_for(lambda: {r.state for r in AlertStore(db).outbox()} == {"delivered"}, timeout_s=10.0)
    finally:
        stop.set()
        runner.join(20.0)
    assert not runner.is_alive()
    assert sorted(slow.fingerprints()) == sorted(created)  # every notification, exactly once
    assert len(healthy.received) == BURST
