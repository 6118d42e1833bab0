"""A local HTTP server that plays the Open Inference Protocol v2 and OpenAI-compatible contracts, and
misbehaves on request: the contract tests of the canary's clients.

``mode`` picks what it does (changeable while running): ``good`` answers right; ``wrong`` is ready and
answers wrongly; ``slow`` is ready but answers after the client's timeout; ``malformed`` answers 200 with a body that
is not JSON; ``bad_tensor`` answers JSON whose tensor data does not fit its shape; ``not_ready``
answers 503 on readiness. The OpenAI side streams server-sent events like llama.cpp does (a role
chunk, content chunks, ``[DONE]``). Every request is recorded (path and body) for assertions.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeModelServer:
    def __init__(self) -> None:
        self.mode = "good"
        self.delay = 3.0  # seconds a "slow" answer takes
        self.requests: list[tuple[str, str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str, body: Any) -> tuple[int, bytes, str]:
        """(status, body, content type) for one request in the current mode."""
        if self.mode == "slow" and not path.endswith("/ready") and path != "/v1/models":
            time.sleep(self.delay)  # ready, but every answer comes too late
        if path.endswith("/ready"):
            return (503, b'{"error":"not ready"}', "application/json") if self.mode == "not_ready" else (200, b"", "")
        if self.mode == "malformed":
            return 200, b"<html>upstream error</html>", "text/html"
        if path == "/v1/models":
            return 200, json.dumps({"object": "list", "data": [{"id": "llm"}]}).encode(), "application/json"
        if path.endswith("/infer"):
            return 200, json.dumps(self._infer(path, body)).encode(), "application/json"
        if path in ("/v1/chat/completions", "/v1/completions"):
            return self._openai(path, body)
        if path == "/predict":
            return 200, json.dumps({"result": {"label": 7 if self.mode == "wrong" else body["x"] * 2}}).encode(), (
                "application/json")
        return 404, b'{"error":"not found"}', "application/json"

    def _infer(self, path: str, body: Any) -> dict[str, Any]:
        label = int(sum(body["inputs"][0]["data"])) % 10
        if self.mode == "wrong":
            label = (label + 1) % 10
        data = [label, label] if self.mode == "bad_tensor" else [label]
        version = path.split("/versions/")[1].split("/")[0] if "/versions/" in path else "v-default"
        return {"model_name": "m", "model_version": version, "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [1, 1], "data": data}]}

    def _openai(self, path: str, body: Any) -> tuple[int, bytes, str]:
        text = '{"city": "Lyon"}' if self.mode == "wrong" else '{"city": "Paris"}'
        key = "message" if path.endswith("chat/completions") else None
        if not body.get("stream"):
            choice = {"message": {"role": "assistant", "content": text}} if key else {"text": text}
            return 200, json.dumps({"choices": [{"index": 0, **choice}]}).encode(), "application/json"
        chunks = [{"choices": [{"delta": {"role": "assistant"}}]}] if key else []
        for piece in (text[:5], text[5:]):
            chunks.append({"choices": [{"delta": {"content": piece}}]} if key else {"choices": [{"text": piece}]})
        events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return 200, events.encode(), "text/event-stream"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, body: Any) -> None:
                outer.requests.append((self.command, self.path, body))
                status, data, ctype = outer.answer(self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                self._reply(json.loads(raw) if raw else None)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    def start(self) -> FakeModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def fake_model_server() -> Iterator[FakeModelServer]:
    server = FakeModelServer().start()
    try:
        yield server
    finally:
        server.stop()


class Recorder:
    """A webhook receiver that keeps every JSON body it is sent (what a person's pager would show)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
