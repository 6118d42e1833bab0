"""The protocols a canary speaks: KServe Open Inference Protocol v2, OpenAI-compatible completions
(chat and plain, streamed or not) and plain HTTP JSON.

A client never raises for what a server does: a refused connection, a timeout, an HTTP error, a
body that is not JSON or a tensor whose data does not fit its shape is an :class:`Answer` with an
``error`` that says so, which the round records as that item's failure. Requests are deterministic
where the protocol allows (the probe's ``temperature: 0`` and ``seed`` are sent with every
OpenAI-compatible request).
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httpx
from vigil.alerting.canary.spec import Arm, Item, Probe

ERROR_BODY = 200  # characters of an error body kept in the reason


@dataclass(frozen=True, slots=True)
class Answer:
    value: Any = None  # what the checkers see
    text: str = ""  # the answer as received, for the record
    latency_s: float = 0.0
    ttft_s: float | None = None
    version: str | None = None  # the model version that answered, where the protocol says
    error: str | None = None  # why there is no usable answer


class Client(Protocol):
    def ready(self, arm: Arm) -> str | None:
        """None when the arm can answer; else why not (``server not ready: HTTP 503``)."""
        ...

    def ask(self, arm: Arm, item: Item) -> Answer: ...


class Failed(Exception):
    """An answer that cannot be used; its message is the item's reason."""


def client_for(probe: Probe, http: httpx.Client) -> Client:
    if probe.protocol == "oip_v2":
        return OipClient(probe, http)
    if probe.protocol == "http_json":
        return HttpJsonClient(probe, http)
    return OpenAIClient(probe, http)


def select(value: Any, path: str | None) -> Any:
    """The field at a dotted ``path`` of a JSON answer (text is parsed first); raises Failed."""
    if path is None:
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise Failed(f"malformed JSON answer ({exc.args[0][:60]})") from exc
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise Failed(f"no field {path!r} in the answer")
    return value


class _Http(ABC):
    """What every client shares: one pooled httpx client, the probe's timeout and headers."""

    def __init__(self, probe: Probe, http: httpx.Client) -> None:
        self.probe, self.http = probe, http
        self.timeout = probe.schedule.timeout
        self.headers = dict(probe.request.get("headers", {}))

    def _json(self, method: str, url: str, body: Any = None) -> tuple[Any, float]:
        """The answer's JSON and the seconds it took; raises Failed with a reason."""
        start = time.perf_counter()
        try:
            response = self.http.request(method, url, json=body, headers=self.headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise Failed(f"timeout after {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise Failed(f"{type(exc).__name__}: {exc}"[:ERROR_BODY]) from exc
        elapsed = time.perf_counter() - start
        if response.status_code >= 400:
            raise Failed(f"HTTP {response.status_code}: {response.text[:ERROR_BODY]}")
        try:
            return response.json(), elapsed
        except ValueError as exc:
            raise Failed(f"malformed JSON (HTTP {response.status_code}): {response.text[:80]!r}") from exc

    def _status(self, url: str) -> int | str:
        try:
            return self.http.get(url, headers=self.headers, timeout=self.timeout).status_code
        except httpx.TimeoutException:
            return f"timeout after {self.timeout:g}s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:ERROR_BODY]

    def ask(self, arm: Arm, item: Item) -> Answer:
        start = time.perf_counter()
        try:
            return self._ask(arm, item)
        except Failed as exc:
            return Answer(latency_s=time.perf_counter() - start, error=str(exc))

    @abstractmethod
    def _ask(self, arm: Arm, item: Item) -> Answer:
        """One golden item through this protocol; raises ``Failed`` with the reason."""


class OipClient(_Http):
    """Open Inference Protocol v2: readiness of the server and the model (version), then ``/infer``
    with typed tensors; the answer is the chosen output tensor's data, its version ``model_version``."""

    def _model_path(self, arm: Arm) -> str:
        path = f"{arm.endpoint}/v2/models/{self.probe.model}"
        return f"{path}/versions/{arm.version}" if arm.version else path

    def ready(self, arm: Arm) -> str | None:
        server = self._status(f"{arm.endpoint}/v2/health/ready")
        if server != 200:
            return f"server not ready: {_code(server)}"
        model = self._status(f"{self._model_path(arm)}/ready")
        if model == 404:
            return "model not loaded (HTTP 404)"
        return None if model == 200 else f"model not ready: {_code(model)}"

    def _ask(self, arm: Arm, item: Item) -> Answer:
        body = {"id": item.id, "inputs": list(item.request["inputs"])}
        data, elapsed = self._json("POST", f"{self._model_path(arm)}/infer", body)
        tensor = _output(data, item.request.get("output"))
        value = tensor["data"][0] if len(tensor["data"]) == 1 else tensor["data"]
        version = data.get("model_version")
        text = json.dumps(value, separators=(",", ":"))
        return Answer(select(value, item.select), text, elapsed, version=str(version) if version else None)


def _output(data: Any, name: str | None) -> dict[str, Any]:
    outputs = data.get("outputs") if isinstance(data, dict) else None
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, dict) for o in outputs):
        raise Failed("malformed answer: no outputs")
    tensor = next((o for o in outputs if o.get("name") == name), None) if name else outputs[0]
    if tensor is None:
        raise Failed(f"malformed answer: no output {name!r}")
    shape, values = tensor.get("shape"), tensor.get("data")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape) or not isinstance(values, list):
        raise Failed(f"malformed answer: output {tensor.get('name')!r} lacks shape or data")
    if math.prod(shape) != len(values):
        raise Failed(f"malformed answer: {len(values)} values for shape {shape}")
    return cast(dict[str, Any], tensor)


class OpenAIClient(_Http):
    """``/v1/chat/completions`` or ``/v1/completions`` (vLLM, TGI, llama.cpp); streamed items are read
    as server-sent events and their first token timed."""

    def ready(self, arm: Arm) -> str | None:
        try:
            data, _ = self._json("GET", f"{arm.endpoint}/v1/models")
        except Failed as exc:
            return f"not ready: {exc}"
        names = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)] if isinstance(data, dict) else []
        return None if self.probe.model in names else f"model {self.probe.model!r} not served (models: {names})"

    def _body(self, item: Item, stream: bool) -> dict[str, Any]:
        defaults = {k: self.probe.request[k] for k in ("temperature", "seed", "max_tokens") if k in self.probe.request}
        body: dict[str, Any] = {"model": self.probe.model, **defaults, "stream": stream}
        if "max_tokens" in item.request:
            body["max_tokens"] = item.request["max_tokens"]
        if self.probe.protocol == "openai_chat":
            body["messages"] = item.request.get("messages") or [{"role": "user", "content": item.request["prompt"]}]
        else:
            body["prompt"] = item.request["prompt"]
        if "response_format" in item.request:
            schema = {"name": item.id.replace(".", "_"), "schema": item.request["response_format"], "strict": True}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        return body

    def _path(self) -> str:
        return "/v1/chat/completions" if self.probe.protocol == "openai_chat" else "/v1/completions"

    def _ask(self, arm: Arm, item: Item) -> Answer:
        stream = bool(item.request.get("stream", False))
        if stream:
            text, elapsed, ttft = self._stream(f"{arm.endpoint}{self._path()}", self._body(item, True))
        else:
            data, elapsed = self._json("POST", f"{arm.endpoint}{self._path()}", self._body(item, False))
            text, ttft = _content(data), None
        return Answer(select(text, item.select), text, elapsed, ttft)

    def _stream(self, url: str, body: dict[str, Any]) -> tuple[str, float, float | None]:
        start = time.perf_counter()
        parts: list[str] = []
        ttft: float | None = None
        try:
            with self.http.stream("POST", url, json=body, headers=self.headers, timeout=self.timeout) as response:
                if response.status_code >= 400:
                    said = response.read().decode(errors="replace")[:ERROR_BODY]
                    raise Failed(f"HTTP {response.status_code}: {said}")
                for chunk in _events(response.iter_lines()):
                    piece = _delta(chunk)
                    if piece and ttft is None:
                        ttft = time.perf_counter() - start
                    parts.append(piece)
        except httpx.TimeoutException as exc:
            raise Failed(f"timeout after {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise Failed(f"{type(exc).__name__}: {exc}"[:ERROR_BODY]) from exc
        return "".join(parts), time.perf_counter() - start, ttft


def _events(lines: Iterator[str]) -> Iterator[Any]:
    """The JSON payloads of a server-sent event stream, up to ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments, event names
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError as exc:
            raise Failed(f"malformed stream event: {payload[:80]!r}") from exc


def _delta(chunk: Any) -> str:
    try:
        choice = chunk["choices"][0] if chunk["choices"] else {}
    except (KeyError, TypeError) as exc:
        raise Failed(f"malformed stream event: {json.dumps(chunk)[:80]}") from exc
    piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
    return piece if isinstance(piece, str) else ""


def _content(data: Any) -> str:
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
    except (KeyError, IndexError, TypeError) as exc:
        raise Failed(f"malformed answer: no choices[0] content in {json.dumps(data)[:80]}") from exc
    if not isinstance(text, str):
        raise Failed("malformed answer: the content is not text")
    return text


class HttpJsonClient(_Http):
    """A JSON POST of the item's ``body`` to ``endpoint + path``; the answer is the response (``select``)."""

    def ready(self, arm: Arm) -> str | None:
        return None  # no readiness contract: a server that cannot answer fails its items

    def _ask(self, arm: Arm, item: Item) -> Answer:
        data, elapsed = self._json("POST", f"{arm.endpoint}{item.request.get('path', '')}", item.request["body"])
        text = json.dumps(data, separators=(",", ":"))
        return Answer(select(data, item.select), text, elapsed)


def _code(status: int | str) -> str:
    return f"HTTP {status}" if isinstance(status, int) else status
