"""Self-metrics and health: every service gets its own registry and one small HTTP endpoint.

No global registry: each service creates a ``CollectorRegistry`` and passes it to what it builds,
so two services in one process (tests, ``vigil up --inline``) never collide.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HealthCheck = Callable[[], dict[str, object]]


class SelfMetricsServer:
    """Serves ``/metrics`` (Prometheus text) and ``/healthz`` (JSON, 503 when not ok) on loopback."""

    def __init__(
        self, registry: CollectorRegistry, health: HealthCheck, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._registry = registry
        self._health = health
        handler = self._handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="selfmetrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Where it listens, as a URL (``http://127.0.0.1:9480``)."""
        host = str(self._server.server_address[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> SelfMetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = generate_latest(outer._registry), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz"):
                    status = outer._health()
                    body = json.dumps(status).encode()
                    ctype, code = "application/json", 200 if status.get("ok") else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
