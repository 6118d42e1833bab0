"""Contract test: the sink's requests as InfluxDB 2's write API specifies them (POST /api/v2/write with org,
bucket and precision=ns, ``Authorization: Token <token>``, a text/plain line protocol body), and its reading
of the answers (204 done; 429 and 503 retried; 400 the data's fault; 401 an operator's). No InfluxDB 2 runs
here: a local HTTP server plays the documented API. VictoriaMetrics and InfluxDB 1.6 are the real servers
of tests/integration/test_sink_stores.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from vigil.sinks.config import InfluxConfig
from vigil.sinks.store import InfluxStore, StoreRejected, StoreUnavailable

BODY = b"gpu_power_watts,cluster=dc1,gpu_index=0,host=node-01 value=612.5 1796500000000000000\n"


class InfluxV2:
    """Answers each POST with the next scripted (status, headers, body); records every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict[str, object]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                parts = urlsplit(self.path)
                body = self.rfile.read(length)
                query = parse_qs(parts.query)
                outer.requests.append({"path": parts.path, "query": query, "headers": dict(self.headers), "body": body})
                status, headers, body = outer.script.pop(0) if outer.script else (204, {}, b"")
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api() -> Iterator[InfluxV2]:
    server = InfluxV2()
    yield server
    server.server.shutdown()
    server.server.server_close()


def store(api: InfluxV2, **over: object) -> InfluxStore:
    retry = {"max_retries": 3, "initial": 0.05, "max_delay": 0.2}
    config = InfluxConfig(url=api.url, org="acme", bucket="gpus", token="s3cret-token", retry=retry, **over)  # type: ignore[arg-type]
    return InfluxStore(config)


def error(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


def test_a_write_is_the_documented_request(api: InfluxV2) -> None:
    store(api).write(BODY)
    (request,) = api.requests
    assert request["path"] == "/api/v2/write"
    assert request["query"] == {"org": ["acme"], "bucket": ["gpus"], "precision": ["ns"]}
    headers = request["headers"]
    assert headers["Authorization"] == "Token s3cret-token"  # type: ignore[index]
    assert headers["Content-Type"].startswith("text/plain")  # type: ignore[index]  # line protocol
    assert request["body"] == BODY


def test_429_and_503_are_retried_honouring_retry_after(api: InfluxV2) -> None:
    api.script = [(429, {"Retry-After": "1"}, error("too many requests", "slow down")), (503, {}, b"")]
    retried: list[int] = []
    InfluxStore(store(api).config, on_retry=lambda: retried.append(1)).write(BODY)
    assert len(api.requests) == 3 and len(retried) == 2
    assert all(r["body"] == BODY for r in api.requests)


def test_400_is_the_datas_fault_and_names_the_servers_reason(api: InfluxV2) -> None:
    api.script = [(400, {}, error("invalid", "unable to parse 'x': missing fields"))]
    with pytest.raises(StoreRejected, match=r"400.*missing fields"):
        store(api).write(BODY)
    assert len(api.requests) == 1  # never retried: the same bytes would be refused again


@pytest.mark.parametrize("status", [401, 403, 404])
def test_credentials_and_missing_buckets_are_retryable_never_the_datas_fault(api: InfluxV2, status: int) -> None:
    api.script = [(status, {}, error("unauthorized", "read:authorizations is unauthorized"))]
    with pytest.raises(StoreUnavailable, match=str(status)):
        store(api).write(BODY)


def test_a_store_that_keeps_failing_gives_up_after_max_retries(api: InfluxV2) -> None:
    api.script = [(503, {}, b"")] * 10
    with pytest.raises(StoreUnavailable):
        store(api).write(BODY)
    assert len(api.requests) == 4  # the first attempt and max_retries=3 more


def test_without_a_token_no_authorization_header_is_sent(api: InfluxV2) -> None:
    InfluxStore(InfluxConfig(url=api.url)).write(BODY)
    assert "Authorization" not in api.requests[0]["headers"]  # type: ignore[operator]
