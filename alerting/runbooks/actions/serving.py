"""Actions on model servers: roll a model back to its previous version, take a node out of serving.

- ``mlserver.rollback {server, model, version[, to]}``: Seldon MLServer's model repository. Its
  load and unload act on every version of a name, and the unversioned path serves the version
  loaded last, so a rollback moves the bad version's folder out of the repository (into the
  server's ``retired`` folder, kept for a roll forward), then unloads and loads the model: what is
  left serves. ``check`` says done when the bad version's folder is gone and the server no longer
  lists it; ``verify`` wants the model ready without the bad version (and serving ``to`` when
  given). A model with no other version is refused, never left with nothing to serve.
- ``oip.unload {node, model}`` / ``oip.load {node, model}``: the Open Inference Protocol's model
  repository extension (MLServer and Triton: ``POST /v2/repository/models/{model}/unload|load``) on
  the node's own server (``serving.node_url``, e.g. ``http://{node}:8080``). Unloaded, the model's
  ``/v2/models/{model}/ready`` is no longer 200, which is what readiness probes and load balancers
  route by: the node is out of serving. ``oip.load`` is its undo.

Servers are named in config (``alerting.remediation.serving.servers``), so an alert's labels can
choose among known servers but never point an action at an arbitrary URL.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from vigil.alerting.runbooks.actions.base import NODE, REASON, ActionResult, Params, params_schema, string
from vigil.alerting.runbooks.config import ModelServerConfig

SERVER = string("the model server's name in alerting.remediation.serving.servers, usually '{server}'")
MODEL = string("the model's name, usually '{model}'", pattern="^[A-Za-z0-9][A-Za-z0-9._-]*$")
VERSION = string("the bad version, usually '{model_version}'", pattern="^[A-Za-z0-9][A-Za-z0-9._-]*$")
NODE_NAME = {**NODE, "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"}  # it becomes part of a URL


def _post(url: str, timeout: float) -> ActionResult:
    try:
        response = httpx.post(url, json={}, timeout=timeout)
    except httpx.HTTPError as exc:
        return ActionResult.failed(f"{type(exc).__name__} on {url}", retryable=True)
    if response.is_success:
        return ActionResult.done(f"HTTP {response.status_code}")
    retryable = response.status_code in (408, 425, 429) or response.status_code >= 500
    return ActionResult.failed(f"HTTP {response.status_code}: {response.text[:200]}", retryable=retryable)


def _status(url: str, timeout: float) -> int | None:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


class MLServerRollback:
    name = "mlserver.rollback"
    schema = params_schema(
        {"server": SERVER, "model": MODEL, "version": VERSION},
        {"to": string("the version that must serve afterwards (checked by verify)"), "reason": REASON},
    )
    destructive = False  # back to the version that served before; the bad one's files are kept
    target: str | None = None
    undo: str | None = None

    def __init__(self, servers: Mapping[str, ModelServerConfig], timeout: float = 30.0) -> None:
        self.servers, self.timeout = dict(servers), timeout

    def _where(self, params: Params) -> tuple[ModelServerConfig, Path, Path] | str:
        server = self.servers.get(params["server"])
        if server is None:
            return f"no model server named {params['server']!r} (known: {', '.join(sorted(self.servers)) or 'none'})"
        if server.repository is None or server.retired is None:
            return f"model server {params['server']!r} has no repository/retired folders configured"
        return server, server.repository / params["model"], server.retired / params["model"]

    def _index(self, server: ModelServerConfig, model: str) -> list[dict[str, Any]] | None:
        try:
            response = httpx.post(f"{server.url}/v2/repository/index", json={}, timeout=self.timeout)
            rows = response.json() if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return None
        return [r for r in rows if isinstance(r, dict) and r.get("name") == model] if isinstance(rows, list) else None

    def check(self, params: Params, idempotency_key: str) -> bool:
        where = self._where(params)
        if isinstance(where, str):
            return False
        server, folder, _ = where
        rows = self._index(server, params["model"])
        listed = rows is None or any(r.get("version") == params["version"] for r in rows)
        return not (folder / params["version"]).exists() and not listed

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        where = self._where(params)
        if isinstance(where, str):
            return ActionResult.failed(where)
        server, folder, retired = where
        version, model = params["version"], params["model"]
        others = sorted(p.parent.name for p in folder.glob("*/model-settings.json") if p.parent.name != version)
        if not others:
            return ActionResult.failed(f"{model} has no other version to roll back to: {version} stays")
        if params.get("to") and params["to"] not in others:
            return ActionResult.failed(f"{model} {params['to']} is not in the repository (versions: {others})")
        bad = folder / version
        if bad.exists():
            retired.mkdir(parents=True, exist_ok=True)
            shutil.move(str(bad), str(retired / f"{version}-{int(time.time())}"))
        for verb in ("unload", "load"):
            result = _post(f"{server.url}/v2/repository/models/{model}/{verb}", self.timeout)
            if not result.ok:
                return ActionResult.failed(f"{verb} {model}: {result.detail}", retryable=result.retryable)
        detail = f"rolled {model} back from {version}; serving {', '.join(others)}"
        return ActionResult.done(detail, retired=str(retired))

    def verify(self, params: Params) -> ActionResult:
        where = self._where(params)
        if isinstance(where, str):
            return ActionResult.failed(where)
        rows = self._index(where[0], params["model"])
        if rows is None:
            return ActionResult.failed("the repository index does not answer", retryable=True)
        ready = {r.get("version") for r in rows if r.get("state") == "READY"}
        if params["version"] in {r.get("version") for r in rows}:
            return ActionResult.failed(f"{params['version']} is still listed: {rows}", retryable=True)
        if not ready or (params.get("to") and params["to"] not in ready):
            return ActionResult.failed(f"not serving {params.get('to') or 'any version'}: {rows}", retryable=True)
        return ActionResult.done(f"{params['model']} serves {', '.join(sorted(map(str, ready)))}")


class OipRepository:
    """``oip.unload`` (take the node out of serving) and ``oip.load`` (put it back)."""

    def __init__(self, verb: str, node_url: str, timeout: float = 10.0) -> None:
        self.verb, self.node_url, self.timeout = verb, node_url, timeout
        self.name = f"oip.{verb}"
        self.schema = params_schema({"node": NODE_NAME, "model": MODEL}, {"reason": REASON})
        self.destructive = verb == "unload"  # less serving capacity
        self.target: str | None = "node"
        self.undo: str | None = "oip.load" if verb == "unload" else None

    def _url(self, params: Params) -> str:
        return self.node_url.replace("{node}", params["node"]).rstrip("/")

    def _ready(self, params: Params) -> int | None:
        return _status(f"{self._url(params)}/v2/models/{params['model']}/ready", self.timeout)

    def check(self, params: Params, idempotency_key: str) -> bool:
        status = self._ready(params)
        return status is not None and (status != 200 if self.verb == "unload" else status == 200)

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        result = _post(f"{self._url(params)}/v2/repository/models/{params['model']}/{self.verb}", self.timeout)
        if not result.ok and self.verb == "unload" and result.detail.startswith("HTTP 404"):
            return ActionResult.done(f"{params['model']} was not loaded on {params['node']}")
        if not result.ok:
            return result
        where = "out of" if self.verb == "unload" else "back in"
        return ActionResult.done(f"{params['model']} {self.verb}ed on {params['node']}: {where} serving")

    def verify(self, params: Params) -> ActionResult:
        status = self._ready(params)
        if status is None:
            return ActionResult.failed(f"{params['node']}'s model server does not answer", retryable=True)
        if (status == 200) == (self.verb == "load"):
            return ActionResult.done(f"{params['model']} ready on {params['node']}: HTTP {status}")
        return ActionResult.failed(f"{params['model']} ready on {params['node']}: HTTP {status}", retryable=True)


def serving_actions(servers: Mapping[str, ModelServerConfig], node_url: str | None, timeout: float) -> list[Any]:
    out: list[Any] = [MLServerRollback(servers, timeout)] if servers else []
    if node_url is not None:
        out += [OipRepository("unload", node_url, timeout), OipRepository("load", node_url, timeout)]
    return out
