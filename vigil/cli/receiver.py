"""A webhook receiver for ``vigil up``: it is the pager, so the run can measure time-to-page."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vigil.cli.report import Notification

_STATUS = {"trigger": "firing", "resolve": "resolved", "acknowledge": "acknowledged"}


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/notify"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def _record(self, body: dict[str, object]) -> None:
        """A webhook notification (version 2): the first member alert's labels say what paged."""
        members = body.get("members")
        first = members[0] if isinstance(members, list) and members else None
        if not isinstance(first, dict):
            return
        labels = first.get("labels") if isinstance(first.get("labels"), dict) else {}
        note = Notification(
            time.time(),
            _STATUS.get(str(body.get("action", "")), str(body.get("action", ""))),
            str(body.get("incident_id", "")),
            {str(k): str(v) for k, v in (labels or {}).items()},
            str(body.get("reason", "")),
        )
        with self._lock:
            self.notifications.append(note)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                if isinstance(body, dict):
                    outer._record(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
