"""The OpenAI-compatible protocol against the REAL llama.cpp server (xllamacpp, from the serving venv)
with the real Gemma-3-270M: deterministic, JSON-schema-constrained golden answers; streamed time to
first token; and a degraded deployment (the same model with a truncated context, 256 tokens) judged
fail against the healthy one by the board, the service's judge, within one window of rounds.

The golden prompts carry a system prompt of about 270 tokens, as a real deployment's do: the healthy
server (2048 tokens of context) answers them, the truncated one refuses each with llama.cpp's
``exceed_context_size_error``. Gemma-3-270M is small: the items are the ones it answers right.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import yaml
from vigil.alerting.canary.board import ALERTNAME, Board
from vigil.alerting.canary.clients import client_for
from vigil.alerting.canary.rounds import run_round
from vigil.alerting.canary.spec import Probe, load_text

from tests.model_servers import LlamaServer, llama_server
from vigil.clock import FakeClock
from vigil.events import Detection, ProbeResult

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYSTEM = "You are a careful assistant for a geography quiz. Answer with the single correct option. " * 15
WINDOW = 3


def choice(*options: str) -> dict[str, object]:
    return {"type": "object", "properties": {"answer": {"enum": list(options)}}, "required": ["answer"],
            "additionalProperties": False}


def item(id_: str, question: str, options: tuple[str, ...], right: str, stream: bool = False) -> dict[str, object]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    out: dict[str, object] = {"id": id_, "messages": messages, "response_format": choice(*options),
                              "select": "answer", "expect": {"equals": right}}
    if stream:
        out["stream"] = True
    return out


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LlamaServer, LlamaServer]]:
    folder = tmp_path_factory.mktemp("llama")
    with llama_server(folder) as healthy, llama_server(folder, n_ctx=256) as truncated:
        yield healthy, truncated


def probe(healthy: LlamaServer, truncated: LlamaServer) -> Probe:
    items = [
        item("france", "What is the capital of France?", ("Paris", "London", "Berlin"), "Paris"),
        item("italy", "What is the capital of Italy?", ("Madrid", "Rome", "Paris"), "Rome"),
        item("france-streamed", "What is the capital of France?", ("Paris", "London", "Berlin"), "Paris", True),
    ]
    text = yaml.safe_dump({"probes": [{
        "name": "chat", "protocol": "openai_chat", "endpoint": healthy.url, "model": healthy.alias,
        "arms": [{"name": "healthy"}, {"name": "truncated", "endpoint": truncated.url}], "baseline": "healthy",
        "schedule": {"timeout": "120s", "round_timeout": "600s"},
        "request": {"temperature": 0, "seed": 42, "max_tokens": 16},
        "criteria": {"window": WINDOW},
        "items": items,
    }]})
    return load_text(text, "chat.yaml")[0]


def test_a_truncated_context_is_judged_fail_against_the_healthy_server(
    servers: tuple[LlamaServer, LlamaServer],
) -> None:
    p = probe(*servers)
    board = Board([p], "c1", FakeClock(1.79e9).now)
    rounds: list[list[ProbeResult]] = []
    detections: list[Detection] = []
    with httpx.Client() as http:
        client = client_for(p, http)
        for number in range(1, WINDOW + 1):
            results = [run_round(p, arm, client, number, FakeClock(1.79e9).now, "schedule") for arm in p.arms]
            rounds.append(results)
            detections += board.add(results)

    healthy = [r[0] for r in rounds]
    assert all(r.ok and r.passed == 3 for r in healthy), [r.detail for r in healthy]
    # Deterministic decoding: every round, the same constrained answer, word for word.
    assert {i.answer for r in healthy for i in r.items if i.id == "france"} == {'{\n    "answer": "Paris"\n}'}
    streamed = [next(i for i in r.items if i.id == "france-streamed") for r in healthy]
    assert all(i.ttft_s is not None and 0 < i.ttft_s <= i.latency_s for i in streamed)
    assert all(r.ttft_s is not None for r in healthy)  # the round's TTFT, for the histogram and the judge

    truncated = [r[1] for r in rounds]
    assert all(r.passed == 0 for r in truncated)
    assert all("exceeds the available context size" in i.reason for r in truncated for i in r.items)

    firing = [d for d in detections if d.decision == "firing"]
    assert [d.labels["arm"] for d in firing] == ["truncated"]
    alert = firing[0]
    assert alert.labels["alertname"] == ALERTNAME and alert.labels["canary"] == "version"
    reasons = " ".join(alert.reason["reasons"])
    assert "below the floor" in reasons and "Fisher" in reasons
    assert board.status[("chat", "healthy")].verdict == "pass"
