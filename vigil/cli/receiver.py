"""Webhook receivers: the measuring pager of ``vigil up``, and a hung one for ``vigil chaos``."""

from __future__ import annotations

import json
import socket
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
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if it never ran
            self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def _record(self, body: dict[str, object]) -> None:
        """A webhook notification (version 2): its member alerts' labels say what it is about."""
        members = body.get("members")
        sets = tuple(
            {str(k): str(v) for k, v in m["labels"].items()}
            for m in (members if isinstance(members, list) else [])
            if isinstance(m, dict) and isinstance(m.get("labels"), dict)
        )
        if not sets:
            return
        domain = body.get("domain") if isinstance(body.get("domain"), dict) else {}
        priority = body.get("priority")
        note = Notification(
            time.time(),
            _STATUS.get(str(body.get("action", "")), str(body.get("action", ""))),
            str(body.get("incident_id", "")),
            sets[0],
            str(body.get("reason", "")),
            str(body.get("dedup_key", "")),
            sets,
            float(priority) if isinstance(priority, int | float) else None,
            str(body.get("summary", "")),
            f"{domain.get('kind', '')} {domain.get('id', '')}".strip() if isinstance(domain, dict) else "",
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


MAX_HELD = 256


class HangingReceiver:
    """A notifier endpoint that accepts every connection and never answers: a receiver that hangs.

    Connections are held open (never read, never closed) until ``stop``, so a sender sees neither
    a refusal nor a reset, only its own timeout, as with a wedged load balancer.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}/hang"

    @property
    def connections(self) -> int:
        """Connections accepted so far (each one a send that could only time out)."""
        return self._accepted

    def start(self) -> HangingReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._accepted += 1
            self._held.append(conn)
            if len(self._held) > MAX_HELD:  # its sender gave up long ago: free the descriptor
                self._held.pop(0).close()
