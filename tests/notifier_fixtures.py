"""Helpers for the notifier tests: a notification builder and a loopback HTTP server that plays a receiver.

:class:`ContractServer` records every request, runs a contract check on it (a function returning the
list of violations) and answers: 400 with the violations when the request breaks the contract,
otherwise the next scripted answer (or the default). Tests then assert on what was sent and on the
notifier's outcome for each answer.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vigil.alerting.notifiers import Notification

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def notification(**overrides: Any) -> Notification:
    """A typical incident page: XID 79 (GPU fell off the bus) on one node, two member alerts."""
    fields: dict[str, Any] = {
        "dedup_key": "incident:node-07:2026-01-01T00:00:00+00:00",
        "action": "trigger",
        "reason": "first",
        "summary": "node-07: GPU 3 fell off the bus (XID 79), job llama-70b stalled",
        "severity": "critical",
        "source": "node-07",
        "component": "gpu3",
        "group": "rack-12",
        "class": "GpuFellOffBus",
        "timestamp": T0,
        "incident_id": "inc-42",
        "priority": 512.0,
        "domain": {"kind": "node", "id": "node-07"},
        "members": [
            {
                "alertname": "GpuXidFatal",
                "labels": {"host": "node-07", "gpu_index": "3", "xid": "79"},
                "severity": "critical",
                "starts_at": T0,
            },
            {
                "alertname": "TrainingHang",
                "labels": {"job_id": "llama-70b", "host": "node-07"},
                "severity": "warning",
                "starts_at": T0,
            },
        ],
        "custom_details": {"recommended_action": "drain node-07 and reset GPU 3"},
        "links": [
            {"href": "https://vigil.example.com/incidents/inc-42", "text": "Incident"},
            {"href": "https://runbooks.example.com/xid-79", "text": "Runbook"},
        ],
        "receiver": "oncall",
    }
    fields.update(overrides)
    return Notification.model_validate(fields)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    violations: list[str]
    status: int = 0  # what the server answered (0: it dropped the connection)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False  # close the connection without answering (a crashed or unreachable receiver)


Check = Callable[["Seen"], list[str]]


class ContractServer:
    """A receiver on 127.0.0.1 (a free port) that checks each request against a published contract."""

    def __init__(self, check: Check, default: Answer, path: str = "/") -> None:
        self.check = check
        self.default = default
        self.path = path
        self.script: list[Answer] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="contract-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def _answer(self, seen: Seen) -> Answer:
        with self._lock:
            self.seen.append(seen)
            if seen.violations:
                answer = Answer(400, json.dumps({"status": "invalid request", "errors": seen.violations}))
            else:
                answer = self.script.pop(0) if self.script else self.default
            seen.status = 0 if answer.drop else answer.status
            return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = Seen("POST", self.path, dict(self.headers), body, [])
                if self.path != outer.path:
                    seen.violations.append(f"path {self.path!r} is not {outer.path!r}")
                seen.violations.extend(outer.check(seen))
                answer = outer._answer(seen)
                if answer.drop:
                    self.close_connection = True
                    return
                if answer.delay_s:
                    threading.Event().wait(answer.delay_s)
                payload = answer.body.encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    @contextmanager
    def running(self) -> Iterator[ContractServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5.0)


def closed_port_url(path: str = "/") -> str:
    """A loopback URL where nothing listens (the port was free a moment ago): connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
