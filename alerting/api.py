"""The alerting HTTP API on loopback: alerts (paginated), health and self-metrics (FastAPI on uvicorn).

uvicorn runs on its own thread with its own event loop; the listening socket is bound before the
thread starts, so the port (0 = a free one) is known at once and early clients queue in the backlog.

Why it stays fast under a burst of clients (``vigil bench api``): a page is encoded once per store
version (``PageCache``), so a thousand dashboards asking for the same page cost one query, and that
query runs on the thread pool (each thread with its own connection), never on the event loop; a
hit costs the loop one indexed row read and no thread hop (hopping every request to the pool made
the loop wait for the GIL behind 40 threads); the backlog holds a burst of connects instead of
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
from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from vigil.alerting.payload import alert_json
from vigil.alerting.reader import AlertPage, AlertReader, Position

HealthCheck = Callable[[], dict[str, Any]]
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
BACKLOG = 2048  # uvicorn's own default; the kernel caps it at net.core.somaxconn
ALERTS_PATH = "/api/v1/alerts"
PageKey = tuple[str | None, int, str | None]


class PageCache:
    """Encoded pages by query, each valid while the store's ``alerts_version`` is the one it was built
    at; bounded (least recently used first out). Used from the event loop only. Concurrent misses
    for one page share one build (on the thread pool), so a cold burst costs one query, not one each."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._pages: OrderedDict[PageKey, tuple[int, bytes]] = OrderedDict()
        self._flights: dict[tuple[PageKey, int], asyncio.Future[bytes]] = {}

    async def get(self, key: PageKey, version: int, build: Callable[[], bytes]) -> bytes:
        hit = self._pages.get(key)
        if hit is not None and hit[0] == version:
            self._pages.move_to_end(key)
            return hit[1]
        flight = self._flights.get((key, version))
        if flight is None:
            flight = asyncio.ensure_future(run_in_threadpool(build))
            self._flights[(key, version)] = flight
            flight.add_done_callback(lambda done: self._land(key, version, done))
        return await asyncio.shield(flight)

    def _land(self, key: PageKey, version: int, flight: asyncio.Future[bytes]) -> None:
        del self._flights[(key, version)]
        if flight.cancelled() or flight.exception() is not None:
            return  # each waiter sees the error; the next request builds again
        current = self._pages.get(key)
        if current is None or current[0] <= version:
            self._pages[key] = (version, flight.result())
            self._pages.move_to_end(key)
        while len(self._pages) > self._size:
            self._pages.popitem(last=False)


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


def build_app(reader: AlertReader, registry: CollectorRegistry, health: HealthCheck) -> FastAPI:
    app = FastAPI(title="Vigil alerting", version="1")
    cache = PageCache()

    @app.get(ALERTS_PATH)
    async def list_alerts(
        status: Literal["firing", "resolved"] | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> Response:
        """Alerts, most recently changed first, ``limit`` per page. The body is ``{"alerts": [...],
        "next_cursor", "next"}``; pass ``cursor=next_cursor`` with the same filters (or follow ``next``)
        for the following page; both are null on the last page."""
        after = _position(cursor)
        # One indexed row, read on the loop: a WAL reader does not wait for the writers.
        version = reader.version()
        body = await cache.get(
            (status, limit, cursor), version, lambda: encode_page(reader.page(status, limit, after), status, limit)
        )
        return Response(body, media_type="application/json")

    @app.get(ALERTS_PATH + "/{fingerprint}")
    def get_alert(fingerprint: str) -> dict[str, Any]:
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
