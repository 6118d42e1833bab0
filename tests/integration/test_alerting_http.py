"""Alerting against real HTTP on 127.0.0.1: a webhook receiver (http.server) and the alerting API.

The webhook tests drive the dispatcher with a fake clock, so backoff is real logic but no test waits
for it; the API test runs the whole service loop on its own thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.notifiers.webhook import verify
from vigil.alerting.service import AlertingService
from vigil.alerting.store import AlertStore

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock, SystemClock
from vigil.codec import encode
from vigil.config import validate
from vigil.events import Detection
from vigil.topics import Topics

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0
SECRET = "hook-secret"


class Receiver:
    """A webhook receiver that answers with scripted status codes (200 once the script runs out)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def det(decision: str = "firing", ts: float = T0, host: str = "node-1") -> Detection:
    return Detection(
        ts=ts,
        detector="gpu_thermal",
        series=f'gpu_temperature_celsius{{host="{host}"}}',
        labels={"cluster": "c1", "host": host, "gpu_index": "3", "alertname": "GpuOverheating"},
        score=6.5,
        decision=decision,
        severity="critical",
        reason={"action": "drain"},  # type: ignore[arg-type]
        window_start=ts - 60,
        window_end=ts,
        summary=f"GPU 3 on {host} runs hot",
    )


def service_for(tmp_path: Path, receiver: Receiver, clock: FakeClock) -> tuple[AlertingService, MemoryBus]:
    bus, topics = MemoryBus(), Topics()
    config = validate(
        AlertingConfig,
        {
            "notifiers": [{"type": "webhook", "url": receiver.url, "secret": SECRET, "timeout": "2s"}],
            "retry": {"initial_backoff": "1s", "max_backoff": "10s", "jitter_seed": 3},
        },
    )
    svc = AlertingService(bus, topics, config, clock, CollectorRegistry(), tmp_path / "alerts.db")
    bus.producer().send(topics.detections, encode(det()), key=b"k")
    svc.step()
    return svc, bus


def test_webhook_retries_on_503_then_delivers_signed_payload(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeClock(T0)
    svc, _ = service_for(tmp_path, receiver, clock)
    receiver.statuses = [503]
    svc.dispatcher.drain_once()
    row = AlertStore(svc.db_path).outbox()[0]
    assert (row.state, row.attempts) == ("pending", 1) and "503" in (row.last_error or "")
    svc.dispatcher.drain_once()
    assert len(receiver.requests) == 1  # backing off: not due yet
    clock.advance(row.next_attempt_at - clock.now())
    svc.dispatcher.drain_once()
    assert [r.state for r in AlertStore(svc.db_path).outbox()] == ["delivered"]
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[1]
    verify(SECRET, headers["X-Vigil-Timestamp"], body, headers["X-Vigil-Signature"], now=clock.now())
    assert int(headers["X-Vigil-Timestamp"]) == int(clock.now())  # this attempt's time, not the first's
    first, second = receiver.payloads()
    assert first["dedup_key"] == second["dedup_key"] == headers["X-Vigil-Dedup-Key"]
    assert second["version"] == "2" and second["reason"] == "first" and second["action"] == "trigger"
    assert second["class"] == "GpuOverheating" and second["members"][0]["labels"]["alertname"] == "GpuOverheating"
    assert second["custom_details"]["recommended_action"] == "drain" and second["severity"] == "critical"
    assert second["sent_at"] > first["sent_at"]
    svc.close()


def test_webhook_400_is_permanent(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeClock(T0)
    svc, _ = service_for(tmp_path, receiver, clock)
    receiver.statuses = [400]
    svc.dispatcher.drain_once()
    clock.advance(3600)
    svc.dispatcher.drain_once()
    assert len(receiver.requests) == 1
    row = AlertStore(svc.db_path).outbox()[0]
    assert (row.state, row.attempts) == ("failed", 1) and "HTTP 400" in (row.last_error or "")
    log = AlertStore(svc.db_path).notification_log()
    assert [(e["notifier"], e["reason"], e["status"]) for e in log] == [
        ("webhook", "first", "queued"),
        ("webhook", "first", "failed"),
    ]
    svc.close()


def get_until(client: httpx.Client, url: str, count: int, deadline_s: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + deadline_s
    while True:
        body: list[dict[str, Any]] = client.get(url).json()["alerts"]
        if len(body) >= count or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_api_serves_stored_alerts_over_http(tmp_path: Path) -> None:
    bus, topics = MemoryBus(), Topics()
    for d in (det(), det(host="node-2"), det("resolved", ts=T0 + 60, host="node-2")):
        bus.producer().send(topics.detections, encode(d), key=d.series.encode())
    config = validate(AlertingConfig, {"notifiers": [{"type": "log"}]})
    svc = AlertingService(bus, topics, config, SystemClock(), CollectorRegistry(), tmp_path / "alerts.db")
    stop = threading.Event()
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert svc.ready.wait(10.0) and svc.api_port
        base = f"http://127.0.0.1:{svc.api_port}"
        with httpx.Client(base_url=base, timeout=5.0) as client:
            alerts = get_until(client, "/api/v1/alerts?status=resolved", 1)
            assert [a["labels"]["host"] for a in alerts] == ["node-2"]
            assert alerts[0]["ends_at"] == "2026-01-01T00:01:00+00:00"
            firing = client.get("/api/v1/alerts", params={"status": "firing"}).json()["alerts"]
            assert [a["labels"]["host"] for a in firing] == ["node-1"]
            assert len(client.get("/api/v1/alerts").json()["alerts"]) == 2
            one = client.get(f"/api/v1/alerts/{firing[0]['fingerprint']}").json()
            assert one["status"] == "firing" and one["annotations"]["summary"] == "GPU 3 on node-1 runs hot"
            assert client.get("/api/v1/alerts/0000000000000000").status_code == 404
            assert client.get("/api/v1/alerts", params={"status": "bogus"}).status_code == 422
            health = client.get("/healthz")
            assert health.status_code == 200 and health.json()["ok"] is True
            assert 'vigil_alerts_firing{severity="critical"} 1.0' in client.get("/metrics").text
    finally:
        stop.set()
        runner.join(10.0)
    assert not runner.is_alive()
