"""The canary's protocol clients against a local server playing the OIP v2 and OpenAI-compatible
contracts (tests/canary_servers.py): the requests they send, and a clear reason, never an exception,
for every way a server can fail (ready but wrong, too slow, not JSON, a tensor that does not fit
its shape, not ready, not there)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import httpx
import pytest
from vigil.alerting.canary.clients import client_for
from vigil.alerting.canary.rounds import run_round
from vigil.alerting.canary.spec import Probe, load_text

from tests.canary_servers import FakeModelServer, fake_model_server
from vigil.events import ProbeResult

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with fake_model_server() as running:
        yield running


def probe(url: str, protocol: str, items: str, extra: str = "") -> Probe:
    text = f"""probes:
  - name: p
    protocol: {protocol}
    endpoint: {url}
    model: {"llm" if protocol.startswith("openai") else "m"}
    schedule: {{timeout: 500ms, round_timeout: 10s}}
    request: {{temperature: 0, seed: 42, max_tokens: 16}}
{extra}    items:
{items}"""
    return load_text(text, "p.yaml")[0]


OIP_ITEMS = """      - id: three
        inputs: [{name: x, datatype: FP32, shape: [1, 2], data: [1.0, 2.0]}]
        expect: {equals: 3}
"""
CHAT_ITEMS = """      - id: capital
        prompt: What is the capital of France?
        response_format: {type: object, properties: {city: {type: string}}, required: [city]}
        select: city
        expect: {equals: Paris}
      - id: streamed
        messages: [{role: user, content: "Capital of France, as JSON"}]
        stream: true
        expect: {json_schema: {type: object, required: [city]}, contains: Paris}
"""


def one_round(p: Probe, arm: int = 0) -> ProbeResult:
    with httpx.Client() as http:
        return run_round(p, p.arms[arm], client_for(p, http), 1, time.time)


def test_oip_v2_sends_typed_tensors_to_the_versioned_path_and_reads_the_version(server: FakeModelServer) -> None:
    arms = "    arms: [{name: v1, version: v1}, {name: serving}]\n    baseline: v1\n"
    p = probe(server.url, "oip_v2", OIP_ITEMS, arms)
    pinned, serving = one_round(p, 0), one_round(p, 1)
    assert pinned.ok and pinned.version == "v1" and pinned.items[0].answer == "3"
    assert serving.ok and serving.version == "v-default"  # the unversioned path: the answer says which
    paths = [(m, path) for m, path, _ in server.requests]
    assert paths[:3] == [("GET", "/v2/health/ready"), ("GET", "/v2/models/m/versions/v1/ready"),
                         ("POST", "/v2/models/m/versions/v1/infer")]
    body = server.requests[2][2]
    assert body == {"id": "three", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("wrong", "expected 3, got '4'"),
        ("slow", "timeout after 0.5s"),
        ("malformed", "malformed JSON (HTTP 200): '<html>upstream error</html>'"),
        ("bad_tensor", "malformed answer: 2 values for shape [1, 1]"),
        ("not_ready", "server not ready: HTTP 503"),
    ],
)
def test_every_failure_is_a_failed_round_with_its_reason(server: FakeModelServer, mode: str, reason: str) -> None:
    server.mode, server.delay = mode, 1.5
    result = one_round(probe(server.url, "oip_v2", OIP_ITEMS))
    assert not result.ok and result.passed == 0 and result.total == 1
    assert result.items[0].reason == reason or result.items[0].reason.endswith(reason)
    assert reason in result.detail


def test_a_server_that_is_not_there_is_not_ready() -> None:
    result = one_round(probe("http://127.0.0.1:9", "oip_v2", OIP_ITEMS))
    assert not result.ok and result.detail.startswith("not ready: server not ready: ConnectError")


def test_openai_chat_is_deterministic_constrained_and_streams_with_ttft(server: FakeModelServer) -> None:
    result = one_round(probe(server.url, "openai_chat", CHAT_ITEMS))
    assert result.ok, result.detail
    plain, streamed = result.items
    assert plain.answer == '{"city": "Paris"}' and plain.ttft_s is None
    assert streamed.ttft_s is not None and 0 < streamed.ttft_s <= streamed.latency_s
    assert result.ttft_s == streamed.ttft_s
    [(_, _, first), (_, _, second)] = [r for r in server.requests if r[1] == "/v1/chat/completions"]
    assert first["temperature"] == 0 and first["seed"] == 42 and first["max_tokens"] == 16
    assert first["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["strict"] is True
    assert second["stream"] is True


def test_openai_wrong_answers_and_completions(server: FakeModelServer) -> None:
    server.mode = "wrong"
    wrong = one_round(probe(server.url, "openai_chat", CHAT_ITEMS))
    assert [i.reason for i in wrong.items] == [
        "expected Paris, got 'Lyon'",
        """missing 'Paris' in '{"city": "Lyon"}'""",
    ]
    server.mode = "good"
    items = """      - id: c
        prompt: "France: "
        stream: true
        select: city
        expect: {regex: "^Par"}
"""
    done = one_round(probe(server.url, "openai_completions", items))
    assert done.ok and done.items[0].ttft_s is not None
    server.mode = "malformed"
    detail = one_round(probe(server.url, "openai_completions", items)).detail
    assert detail.startswith("not ready: not ready: malformed")


def test_openai_readiness_wants_the_model_listed(server: FakeModelServer) -> None:
    other = dataclasses.replace(probe(server.url, "openai_chat", CHAT_ITEMS), model="gpt-x")
    assert one_round(other).detail == "not ready: model 'gpt-x' not served (models: ['llm'])"


def test_plain_http_json(server: FakeModelServer) -> None:
    items = """      - id: double
        path: /predict
        body: {x: 21}
        select: result.label
        expect: {number: 42, tolerance: 0}
"""
    assert one_round(probe(server.url, "http_json", items)).ok
    server.mode = "wrong"
    assert one_round(probe(server.url, "http_json", items)).items[0].reason == "expected 42 ± 0, got 7"
