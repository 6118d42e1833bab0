"""Notifier URLs never reach the logs or the notification log with their path or query string.

httpx logs every request's full URL at INFO; a webhook URL often carries its token (Slack's path,
``?token=`` query strings). These tests send to real local HTTP servers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from vigil.alerting.config import WebhookNotifierConfig
from vigil.alerting.notifiers import build_notifier_registry

from tests.notifier_fixtures import notification
from vigil.cli.common import setup_logging
from vigil.cli.receiver import WebhookReceiver

TOKEN = "t0ken-that-must-not-leak"
PAGE = notification()


class EchoNotFound(BaseHTTPRequestHandler):
    """A receiver whose 404 page echoes the requested path, as many web servers do."""

    def do_POST(self) -> None:
        body = f"no such hook: {self.path}".encode()
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoNotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def logger_levels() -> Iterator[None]:
    """setup_logging sets library loggers' levels for the process; give them back after the test."""
    names = ("httpx", "httpcore", "kafka")
    saved = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def send(url: str) -> str:
    notifier = build_notifier_registry().create("webhook", config=WebhookNotifierConfig(url=url, timeout=5))
    try:
        result = notifier.send(PAGE)
        assert TOKEN not in repr(notifier)
        return f"{result.outcome} {result.reason}"
    finally:
        notifier.close()


def test_a_delivered_notification_logs_no_url_with_its_token(caplog: pytest.LogCaptureFixture) -> None:
    setup_logging("debug")  # even at debug
    receiver = WebhookReceiver().start()
    try:
        with caplog.at_level(logging.DEBUG):
            outcome = send(f"{receiver.url}?token={TOKEN}")
    finally:
        receiver.stop()
    assert outcome.startswith("delivered") and len(receiver.snapshot()) == 1
    assert TOKEN not in caplog.text
    assert all(r.levelno >= logging.WARNING for r in caplog.records if r.name.startswith(("httpx", "httpcore")))


def test_failure_reasons_name_the_host_but_not_the_path_or_query(echo_server: str) -> None:
    rejected = send(f"{echo_server}/hooks/{TOKEN}?token={TOKEN}")
    assert rejected.startswith("permanent HTTP 404: no such hook: /…") and TOKEN not in rejected
    refused = send(f"http://127.0.0.1:1/hooks/{TOKEN}?token={TOKEN}")
    assert refused.startswith("retryable transport:") and TOKEN not in refused
