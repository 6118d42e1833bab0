"""A loopback HTTP server that plays the Kubernetes API for the official ``kubernetes`` client: the
few endpoints Vigil's node actions use, each request checked against the API's contract.

What it checks (https://kubernetes.io/docs/reference/kubernetes-api/ and the API-initiated eviction
page, https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/):

- ``GET /api/v1/nodes/{name}``: the node, or a 404 ``Status``;
- ``PATCH /api/v1/nodes/{name}`` with ``Content-Type: application/strategic-merge-patch+json``; the
  body may set only ``spec.unschedulable`` (a boolean) and ``spec.taints`` (a list of
  ``{key, value?, effect}``, effect NoSchedule/PreferNoSchedule/NoExecute; the list has no merge key,
  so it replaces the node's), with an optional ``metadata.resourceVersion`` that must be the node's
  current one (else 409 Conflict, as optimistic concurrency answers);
- ``GET /api/v1/pods?fieldSelector=spec.nodeName=<node>``: a ``PodList`` of the node's pods;
- ``POST /api/v1/namespaces/{ns}/pods/{name}/eviction`` with ``Content-Type: application/json`` and
  exactly a ``policy/v1`` ``Eviction`` naming that pod: 201 and the pod starts terminating (it gets a
  ``deletionTimestamp`` and is gone at the next list, as the kubelet would finish it), 429
  ``TooManyRequests`` while a PodDisruptionBudget refuses, 404 for a pod that is not there.

Every request also needs ``Accept: application/json`` and the client's ``User-Agent``. Anything else
(another path or verb, a DELETE of a pod: a forced drain) is a violation, recorded and answered 405.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STRATEGIC = "application/strategic-merge-patch+json"
EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
NODE_PATH = re.compile(r"^/api/v1/nodes/(?P<name>[a-z0-9.-]+)$")
EVICTION_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/pods/(?P<name>[a-z0-9.-]+)/eviction$")


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class KubeState:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pdb_refusals: dict[tuple[str, str], int] = field(default_factory=dict)  # 429s left per pod
    vanish: set[tuple[str, str]] = field(default_factory=set)  # listed, but gone by the eviction (404)


def node(name: str, taints: list[dict[str, Any]] | None = None, unschedulable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    meta = {"name": name, "resourceVersion": "100", "uid": f"uid-{name}"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": {}}


def pod(
    name: str,
    node_name: str,
    ns: str = "train",
    owner: str = "ReplicaSet",
    phase: str = "Running",
    mirror: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": f"{name}-owner", "uid": "o"}]
    if mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    spec = {"nodeName": node_name, "containers": [{"name": "main", "image": "trainer:1"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": phase}}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


class KubeApi:
    def __init__(self, state: KubeState) -> None:
        self.state = state
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[KubeApi]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)

    def requests(self, method: str, path_part: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and path_part in s.path]

    # ------------------------------------------------------------------ the API

    def answer(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.seen.append(seen)
            self._check_headers(seen)
            if (m := NODE_PATH.match(seen.path)) and seen.method in ("GET", "PATCH"):
                current = self.state.nodes.get(m["name"])
                if current is None:
                    return 404, status(404, "NotFound", f'nodes "{m["name"]}" not found')
                return (200, copy.deepcopy(current)) if seen.method == "GET" else self._patch(current, seen)
            if seen.path == "/api/v1/pods" and seen.method == "GET":
                return 200, self._list(seen)
            if (m := EVICTION_PATH.match(seen.path)) and seen.method == "POST":
                return self._evict(m["ns"], m["name"], seen)
            self.violations.append(f"{seen.method} {seen.path}: not an endpoint a node action may call")
            return 405, status(405, "MethodNotAllowed", "not here")

    def _check_headers(self, seen: Seen) -> None:
        if "application/json" not in seen.headers.get("Accept", ""):
            self.violations.append(f"{seen.method} {seen.path}: Accept {seen.headers.get('Accept')!r}")
        if not seen.headers.get("User-Agent", "").startswith("OpenAPI-Generator/"):
            self.violations.append(f"{seen.method} {seen.path}: User-Agent {seen.headers.get('User-Agent')!r}")

    def _patch(self, current: dict[str, Any], seen: Seen) -> tuple[int, dict[str, Any]]:
        if seen.headers.get("Content-Type") != STRATEGIC:
            self.violations.append(f"PATCH {seen.path}: Content-Type {seen.headers.get('Content-Type')!r}")
            return 415, status(415, "UnsupportedMediaType", "strategic merge patch expected")
        body = seen.body if isinstance(seen.body, dict) else {}
        problems = _patch_problems(body)
        if problems:
            self.violations.extend(f"PATCH {seen.path}: {p}" for p in problems)
            return 422, status(422, "Invalid", "; ".join(problems))
        version = body.get("metadata", {}).get("resourceVersion")
        if version is not None and version != current["metadata"]["resourceVersion"]:
            return 409, status(409, "Conflict", "the object has been modified; please apply your changes again")
        spec = body.get("spec", {})
        if "unschedulable" in spec:
            current["spec"]["unschedulable"] = spec["unschedulable"]
        if "taints" in spec:
            current["spec"]["taints"] = spec["taints"]
        current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        return 200, copy.deepcopy(current)

    def _list(self, seen: Seen) -> dict[str, Any]:
        selector = seen.query.get("fieldSelector", [""])[0]
        if not selector.startswith("spec.nodeName="):
            self.violations.append(f"GET /api/v1/pods: fieldSelector {selector!r}")
        node_name = selector.removeprefix("spec.nodeName=")
        items = []
        for key, found in list(self.state.pods.items()):
            if found["spec"]["nodeName"] != node_name:
                continue
            items.append(copy.deepcopy(found))
            if "deletionTimestamp" in found["metadata"]:
                del self.state.pods[key]  # the kubelet finishes it: gone at the next list
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "200"}, "items": items}

    def _evict(self, ns: str, name: str, seen: Seen) -> tuple[int, dict[str, Any]]:
        if seen.headers.get("Content-Type") != "application/json":
            self.violations.append(f"POST {seen.path}: Content-Type {seen.headers.get('Content-Type')!r}")
        expected = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}
        if seen.body != expected:
            self.violations.append(f"POST {seen.path}: body {seen.body!r}, expected {expected!r}")
            return 400, status(400, "BadRequest", "not an Eviction for this pod")
        key = (ns, name)
        if key in self.state.vanish:
            self.state.pods.pop(key, None)
        if key not in self.state.pods:
            return 404, status(404, "NotFound", f'pods "{name}" not found')
        if self.state.pdb_refusals.get(key, 0) > 0:
            self.state.pdb_refusals[key] -= 1
            return 429, status(
                429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget."
            )
        self.state.pods[key]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                seen = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body)
                code, answer = api.answer(seen)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = do_DELETE = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


def _patch_problems(body: dict[str, Any]) -> list[str]:
    problems = []
    unknown = set(body) - {"spec", "metadata"}
    if unknown:
        problems.append(f"unexpected top-level keys {sorted(unknown)}")
    if set(body.get("metadata", {})) - {"resourceVersion"}:
        problems.append(f"metadata may carry only resourceVersion, got {sorted(body['metadata'])}")
    spec = body.get("spec", {})
    if not spec or set(spec) - {"unschedulable", "taints"}:
        problems.append(f"spec must set unschedulable or taints, got {sorted(spec)}")
    if "unschedulable" in spec and not isinstance(spec["unschedulable"], bool):
        problems.append("spec.unschedulable must be a boolean")
    for taint in spec.get("taints", []) or []:
        if set(taint) - {"key", "value", "effect"} or not taint.get("key") or taint.get("effect") not in EFFECTS:
            problems.append(f"not a taint: {taint!r}")
    return problems
