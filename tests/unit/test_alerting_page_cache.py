"""The alerts page cache (ASGI middleware): one app run per query and store version, shared by
concurrent misses; errors never kept; bounded by bytes."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from starlette.types import Message, Receive, Scope, Send
from vigil.alerting.api import AlertPageCache
from vigil.alerting.reader import AlertReader


class Versions:
    def __init__(self) -> None:
        self.current = 1

    def version(self) -> int:
        return self.current


class CountingApp:
    """Answers ``<query>@<run number>`` (status 400 when the query says so), after yielding once so
    that concurrent requests overlap."""

    def __init__(self, size: int = 10) -> None:
        self.runs = 0
        self.size = size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.runs += 1
        await asyncio.sleep(0.01)
        status = 400 if b"bad" in scope["query_string"] else 200
        body = (scope["query_string"] + b"@" + str(self.runs).encode()).ljust(self.size, b".")
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def get(cache: AlertPageCache, query: bytes, path: str = "/api/v1/alerts") -> tuple[int, bytes]:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "query_string": query}
    out: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        out.append(message)

    async def run() -> None:
        await cache(scope, receive, send)

    asyncio.run(run())
    return out[0]["status"], out[1]["body"]


def burst(cache: AlertPageCache, query: bytes, n: int) -> list[bytes]:
    bodies: list[bytes] = []

    async def one() -> None:
        out: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request"}

        async def send(message: Message) -> None:
            out.append(message)

        await cache({"type": "http", "method": "GET", "path": "/api/v1/alerts", "query_string": query}, receive, send)
        bodies.append(out[1]["body"])

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(run())
    return bodies


def make(max_bytes: int = 1 << 20, size: int = 10) -> tuple[AlertPageCache, CountingApp, Versions]:
    app, versions = CountingApp(size), Versions()
    return AlertPageCache(app, cast(AlertReader, versions), max_bytes=max_bytes), app, versions


def test_concurrent_misses_share_one_run_and_hits_run_nothing() -> None:
    cache, app, _ = make()
    assert set(burst(cache, b"limit=5", 50)) == {b"limit=5@1."}
    assert app.runs == 1
    assert get(cache, b"limit=5") == (200, b"limit=5@1.")
    assert app.runs == 1


def test_a_new_store_version_or_another_query_runs_the_app_again() -> None:
    cache, app, versions = make()
    get(cache, b"limit=5")
    assert get(cache, b"limit=6")[1].startswith(b"limit=6@2")
    versions.current = 2
    assert get(cache, b"limit=5")[1].startswith(b"limit=5@3")
    assert get(cache, b"limit=5")[1].startswith(b"limit=5@3") and app.runs == 3


def test_errors_and_other_paths_are_not_cached() -> None:
    cache, app, _ = make()
    assert get(cache, b"bad")[0] == 400 and get(cache, b"bad")[0] == 400
    assert app.runs == 2
    get(cache, b"", path="/healthz")
    get(cache, b"", path="/healthz")
    assert app.runs == 4


def test_bounded_by_bytes_least_recently_used_first_out() -> None:
    cache, app, _ = make(max_bytes=250, size=100)
    for query in (b"a", b"b", b"a", b"c"):  # "b" is the least recently used when "c" arrives
        get(cache, query)
    assert app.runs == 3
    get(cache, b"a")
    assert app.runs == 3  # still held
    get(cache, b"b")
    assert app.runs == 4  # evicted, built again
