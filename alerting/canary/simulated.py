"""A simulated serving fleet: one Open Inference Protocol v2 server per node, behind one loopback port.

``vigil up`` serves a simulated model with it (so its canary has something to ask) and ``vigil bench
canary`` measures the canary against it. Node ``n`` answers under ``/nodes/{n}/v2/...``: health and
model readiness, ``infer``, and the model repository's ``unload``/``load`` (what the
``canary-serving-remove`` runbook's ``oip.unload`` calls: an unloaded model is not ready there).

The model, ``sim-classifier``, answers the index of the largest of its 8 inputs, as INT64. A node
given silent data corruption (``corrupt(node)``: a GPU that computes wrong numbers and reports
nothing) answers the *second* largest for a share of inputs, chosen by the input, so the same
golden item is wrong on every round, as SDC on a real GPU tends to be. Its telemetry is untouched:
only a canary can see it. Latency is a seeded log-normal jitter (``latency_s`` median), per request.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

MODEL = "sim-classifier"
FEATURES = 8


class ServingFleet:
    def __init__(self, nodes: Sequence[str], latency_s: float = 0.002, seed: int = 0, corrupt_share: float = 0.5):
        self.nodes = list(nodes)
        self.latency_s, self.corrupt_share = latency_s, corrupt_share
        self.loaded = {n: True for n in self.nodes}
        self.corrupted: set[str] = set()
        self.requests = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="serving-fleet", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def node_url(self) -> str:
        """The per-node URL template (``{node}``) for probes and ``serving.node_url``."""
        return f"{self.url}/nodes/{{node}}"

    def corrupt(self, node: str, on: bool = True) -> None:
        """Silent data corruption on ``node`` (``on=False``: cured); unknown nodes are not served here."""
        with self._lock:
            if on and node in self.loaded:
                self.corrupted.add(node)
            else:
                self.corrupted.discard(node)

    def start(self) -> ServingFleet:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()

    def status(self) -> dict[str, dict[str, bool]]:
        with self._lock:
            return {n: {"serving": self.loaded[n], "corrupted": n in self.corrupted} for n in self.nodes}

    # ------------------------------------------------------------------ the protocol

    def answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any] | None]:
        parts = path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "nodes" or parts[1] not in self.loaded or parts[2] != "v2":
            return 404, {"error": f"no route {path}"}
        node, rest = parts[1], parts[3:]
        if rest == ["health", "ready"] or rest == ["health", "live"]:
            return 200, None
        if rest[:2] == ["repository", "models"] and len(rest) == 4 and rest[3] in ("load", "unload"):
            with self._lock:
                self.loaded[node] = rest[3] == "load"
            return 200, None
        if rest[:2] != ["models", MODEL]:
            return 404, {"error": f"model {'/'.join(rest[1:2])} not found"}
        if not self.loaded[node]:
            return 400, {"error": f"model {MODEL} not loaded on {node}"}
        if rest[2:] == ["ready"]:
            return 200, None
        if rest[2:] == ["infer"] and method == "POST":
            return self._infer(node, body)
        return 404, {"error": f"no route {path}"}

    def _infer(self, node: str, body: Any) -> tuple[int, dict[str, Any]]:
        try:
            x = np.asarray(body["inputs"][0]["data"], dtype=np.float64)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return 400, {"error": f"bad request: {type(exc).__name__}"}
        if x.size != FEATURES:
            return 400, {"error": f"want {FEATURES} inputs, got {x.size}"}
        with self._lock:
            self.requests += 1
            delay = float(self._rng.lognormal(np.log(self.latency_s), 0.25)) if self.latency_s > 0 else 0.0
            corrupted = node in self.corrupted
        time.sleep(delay)
        order = np.argsort(x)
        label = int(order[-1])
        if corrupted and zlib.crc32(x.tobytes()) % 1000 < self.corrupt_share * 1000:
            label = int(order[-2])  # the wrong answer, the same one for the same input
        output = {"name": "label", "datatype": "INT64", "shape": [1, 1], "data": [label]}
        return 200, {"model_name": MODEL, "model_version": "1", "outputs": [output]}


def golden_items(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` golden items for ``sim-classifier``: random inputs, labelled with the right answer."""
    rng = np.random.default_rng(seed)
    items = []
    for n in range(count):
        x = rng.random(FEATURES).round(4)
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, FEATURES], "data": x.tolist()}
        items.append({"id": f"item-{n:03d}", "inputs": [tensor], "expect": {"equals": int(np.argmax(x))}})
    return items


def probe_document(fleet: ServingFleet, interval: str = "2s", items: int = 20, window: int = 5) -> dict[str, Any]:
    """A per-node probe of the fleet, as a probe file holds it (``yaml.safe_dump`` it)."""
    return {"probes": [{
        "name": MODEL, "protocol": "oip_v2", "endpoint": fleet.node_url(), "model": MODEL, "nodes": fleet.nodes,
        "schedule": {"interval": interval, "timeout": "5s"}, "criteria": {"window": window},
        "items": golden_items(items),
    }]}


def _handler(fleet: ServingFleet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

        def _reply(self, body: Any) -> None:
            status, data = fleet.answer(self.command, self.path, body)
            raw = json.dumps(data).encode() if data is not None else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            if raw:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._reply(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            self._reply(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler
