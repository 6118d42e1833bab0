"""The alerting HTTP API on loopback: alerts, health and self-metrics (FastAPI served by uvicorn).

uvicorn runs on its own thread with its own event loop; the listening socket is bound before the
thread starts, so the port (0 = a free one) is known at once and early clients queue in the backlog.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from vigil.alerting.payload import alert_json
from vigil.alerting.store import AlertReader

HealthCheck = Callable[[], dict[str, Any]]


def build_app(reader: AlertReader, registry: CollectorRegistry, health: HealthCheck) -> FastAPI:
    app = FastAPI(title="Vigil alerting", version="1")

    # async handlers run on the server's loop thread; the reader's queries are small and local.
    @app.get("/api/v1/alerts")
    async def list_alerts(status: Literal["firing", "resolved"] | None = None) -> list[dict[str, Any]]:
        return [alert_json(a) for a in reader.alerts(status)]

    @app.get("/api/v1/alerts/{fingerprint}")
    async def get_alert(fingerprint: str) -> dict[str, Any]:
        alert = reader.get(fingerprint)
        if alert is None:
            raise HTTPException(status_code=404, detail=f"no alert {fingerprint}")
        return alert_json(alert)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        status = health()
        return JSONResponse(status, status_code=200 if status.get("ok") else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class ApiServer:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.create_server((host, port), reuse_port=False)
        # log_config=None: the process's logging belongs to the CLI, not to whichever server starts first
        config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="alerting-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self, timeout_s: float = 10.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        # uvicorn offers no start callback; a short poll keeps start() honest about failures.
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self._server.started:
            raise RuntimeError("alerting API did not start")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._socket.close()

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])
