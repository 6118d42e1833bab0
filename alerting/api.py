"""The alerting HTTP API on loopback: alerts (paginated), health and self-metrics (FastAPI on uvicorn).

uvicorn runs on its own thread with its own event loop; the listening socket is bound before the
thread starts, so the port (0 = a free one) is known at once and early clients queue in the backlog.

Why it stays fast under a burst of clients (``vigil bench api``): a page is built once per store
version (``AlertPageCache``), so a thousand dashboards asking for the same page cost one query, and
that query runs on the thread pool (plain ``def`` handlers; each thread has its own connection),
never on the event loop; a hit costs the loop one indexed row read, with no routing, validation or
thread hop (hopping every request to the pool made the loop wait for the GIL behind 40 threads,
and FastAPI's routing and validation doubled a request's CPU); the backlog holds a burst of connects instead of
dropping SYNs (Python's default of 128 made clients wait for TCP's 1 s retransmit); and uvicorn
uses httptools and uvloop, its C parser and event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from vigil.alerting.alertmanager import AmPayload, candidates
from vigil.alerting.engine import Engine
from vigil.alerting.payload import alert_json
from vigil.alerting.reader import AlertPage, AlertReader, Position

HealthCheck = Callable[[], dict[str, Any]]
DEFAULT_LIMIT = 50  # a screen of alerts
MAX_LIMIT = 1000
BACKLOG = 2048  # uvicorn's own default; the kernel caps it at net.core.somaxconn
ALERTS_PATH = "/api/v1/alerts"
INTAKE_PATH = "/api/v1/intake/alertmanager"


CachedResponse = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


class AlertPageCache:
    """ASGI middleware in front of the app: a response of ``GET /api/v1/alerts`` is kept per query
    string while the store's ``alerts_version`` is the one it was built at, and sent again without
    routing, validation or a query; concurrent misses of one query share one run of the app, so a
    cold burst costs one query, not one each. Bounded by the bytes it holds: the least recently used
    query goes first. Runs on the event loop only."""

    def __init__(self, app: ASGIApp, reader: AlertReader, max_bytes: int = 16 * 2**20) -> None:
        self._app = app
        self._reader = reader
        self._max_bytes = max_bytes
        self._bytes = 0
        self._pages: OrderedDict[bytes, tuple[int, CachedResponse]] = OrderedDict()
        self._flights: dict[tuple[bytes, int], asyncio.Future[CachedResponse]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != ALERTS_PATH:
            await self._app(scope, receive, send)
            return
        key = scope["query_string"]
        version = self._reader.version()  # one indexed row, on the loop: a WAL reader never waits for writers
        hit = self._pages.get(key)
        if hit is not None and hit[0] == version:
            self._pages.move_to_end(key)
            await _replay(hit[1], send)
            return
        flight = self._flights.get((key, version))
        if flight is None:
            flight = asyncio.ensure_future(self._run(scope, receive))
            self._flights[(key, version)] = flight
            flight.add_done_callback(lambda done: self._land(key, version, done))
        await _replay(await asyncio.shield(flight), send)

    async def _run(self, scope: Scope, receive: Receive) -> CachedResponse:
        captured: dict[str, Any] = {"body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"], captured["headers"] = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")

        await self._app(scope, receive, capture)
        return captured["status"], captured["headers"], captured["body"]

    def _land(self, key: bytes, version: int, flight: asyncio.Future[CachedResponse]) -> None:
        del self._flights[(key, version)]
        if flight.cancelled() or flight.exception() is not None or flight.result()[0] != 200:
            return  # errors are not kept: the next request runs the app again
        current = self._pages.get(key)
        if current is not None and current[0] > version:
            return  # a newer build landed first
        if current is not None:
            self._bytes -= len(current[1][2])
        self._pages[key] = (version, flight.result())
        self._pages.move_to_end(key)
        self._bytes += len(flight.result()[2])
        while self._bytes > self._max_bytes and self._pages:
            _, (_, evicted) = self._pages.popitem(last=False)
            self._bytes -= len(evicted[2])


async def _replay(response: CachedResponse, send: Send) -> None:
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def encode_page(page: AlertPage, status: str | None, limit: int) -> bytes:
    """``{"alerts": [...], "next_cursor": str | null, "next": "/api/v1/alerts?...&cursor=..." | null}``."""
    cursor = page.next.cursor() if page.next is not None else None
    query = {**({"status": status} if status else {}), "limit": limit, "cursor": cursor}
    body = {
        "alerts": [alert_json(a) for a in page.alerts],
        "next_cursor": cursor,
        "next": f"{ALERTS_PATH}?{urlencode(query)}" if cursor is not None else None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _position(cursor: str | None) -> Position | None:
    try:
        return Position.parse(cursor) if cursor else None
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("query", "cursor"), "msg": str(exc), "type": "value_error"}]) from exc


def build_app(
    reader: AlertReader,
    registry: CollectorRegistry,
    health: HealthCheck,
    engine: Engine | None = None,
    on_ingest: Callable[[], None] | None = None,
    extra: list[APIRouter] | None = None,
) -> FastAPI:
    """The API; with an ``engine``, the Alertmanager intake too (``on_ingest`` runs after each batch it
    commits: the service publishes the changed alerts on its next step); ``extra`` routers (remediation's
    approvals) are served beside them."""
    app = FastAPI(title="Vigil alerting", version="1")
    app.add_middleware(AlertPageCache, reader=reader)
    if engine is not None:
        app.include_router(intake_router(engine, on_ingest))
    for router in extra or []:
        app.include_router(router)

    @app.get(ALERTS_PATH)
    def list_alerts(
        status: Literal["firing", "resolved"] | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> Response:
        """Alerts, most recently changed first, ``limit`` per page. The body is ``{"alerts": [...],
        "next_cursor", "next"}``; pass ``cursor=next_cursor`` with the same filters (or follow ``next``)
        for the following page; both are null on the last page."""
        page = reader.page(status, limit, _position(cursor))
        return Response(encode_page(page, status, limit), media_type="application/json")

    @app.get(ALERTS_PATH + "/{fingerprint}")
    def get_alert(fingerprint: str) -> dict[str, Any]:
        alert = reader.get(fingerprint)
        if alert is None:
            raise HTTPException(status_code=404, detail=f"no alert {fingerprint}")
        return alert_json(alert)

    @app.get(ALERTS_PATH + "/{fingerprint}/history")
    def alert_history(fingerprint: str, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 200) -> dict[str, Any]:
        """What each pipeline stage decided about this alert, pass by pass (newest ``limit``, oldest first):
        ``{"fingerprint", "passes": [{"at", "status", "incident_id", "stages": [{"stage", "decision",
        "reason", "detail"}]}]}``."""
        passes = reader.history(fingerprint, limit)
        if not passes and reader.get(fingerprint) is None:
            raise HTTPException(status_code=404, detail=f"no alert {fingerprint}")
        return {"fingerprint": fingerprint, "passes": passes}

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        status = health()
        return JSONResponse(status, status_code=200 if status.get("ok") else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def intake_router(engine: Engine, on_ingest: Callable[[], None] | None = None) -> APIRouter:
    """``POST /api/v1/intake/alertmanager``: Alertmanager's webhook (version 4). A router of its own, so
    the API's authentication wraps it like any other route (``include_router(..., dependencies=...)``)."""
    router = APIRouter()

    @router.post(INTAKE_PATH)
    def alertmanager(payload: AmPayload) -> dict[str, Any]:
        """Answers 200 only once the alerts are committed (Alertmanager retries otherwise); a malformed
        payload is a 422 naming the field."""
        batch = engine.ingest(candidates(payload, engine.clock.now()))
        if on_ingest is not None:
            on_ingest()
        incidents = sorted({c.incident_id for c in batch.everything if c.incident_id is not None})
        return {"alerts": len(payload.alerts), "changed": len(batch.changed), "incidents": incidents}

    return router


def _listen(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP, not 0 as socket.create_server leaves it: asyncio sets TCP_NODELAY only on
    # sockets that say they are TCP, and without it a keep-alive response waited 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


class ApiServer:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = _listen(host, port)
        # log_config=None: the process's logging belongs to the CLI, not to whichever server starts first
        config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False, backlog=BACKLOG)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="alerting-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Where it listens, as a URL (``http://127.0.0.1:8080``)."""
        host = str(self._socket.getsockname()[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

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
