"""Contract test: the Slack notifier against a loopback server that plays an incoming webhook.

The server checks every request against Slack's published rules for incoming webhooks and Block Kit:

- POST, ``Content-Type: application/json``, a JSON object with a non-empty ``text`` fallback and
  ``blocks`` (at most 50);
- ``header``: ``plain_text`` of at most 150 characters; ``section``: ``text`` at most 3000 or
  ``fields`` (at most 10, each at most 2000); ``context``: at most 10 elements; ``actions``: at most
  25 elements, each button with ``plain_text`` at most 75, ``url`` at most 3000 and a unique
  ``action_id`` at most 255; ``image``: ``image_url`` and ``alt_text``; no other block types.

It answers as Slack does: 200 ``ok``; a request breaking the contract gets 400 ``invalid_payload``;
scripted 403 ``action_prohibited``, 404 ``no_service``, 410 ``channel_is_archived``, 429 and 500
``rollup_error`` exercise the outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from vigil.alerting.notifiers import SlackNotifier

from tests.notifier_fixtures import Answer, ContractServer, Seen, closed_port_url, notification

LIMITS = {"header": 150, "section": 3000, "field": 2000, "button": 75, "url": 3000, "action_id": 255}


def _text_object(obj: Any, where: str, limit: int, kinds: tuple[str, ...] = ("plain_text", "mrkdwn")) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in kinds or not isinstance(obj.get("text"), str):
        return [f"{where}: not a {' or '.join(kinds)} text object"]
    text = obj["text"]
    return [f"{where}: {len(text)} characters, limit {limit}"] if len(text) > limit or not text else []


def _section(block: dict[str, Any], where: str) -> list[str]:
    if "text" not in block and "fields" not in block:
        return [f"{where}: a section needs text or fields"]
    errors = _text_object(block["text"], f"{where}.text", LIMITS["section"]) if "text" in block else []
    fields = block.get("fields", [])
    if len(fields) > 10:
        errors.append(f"{where}.fields: {len(fields)} fields, limit 10")
    for i, field in enumerate(fields):
        errors += _text_object(field, f"{where}.fields[{i}]", LIMITS["field"])
    return errors


def _actions(block: dict[str, Any], where: str, ids: set[str]) -> list[str]:
    elements = block.get("elements", [])
    errors = [] if 0 < len(elements) <= 25 else [f"{where}: {len(elements)} elements, 1 to 25 allowed"]
    for i, button in enumerate(elements):
        errors += _text_object(button.get("text"), f"{where}.elements[{i}].text", LIMITS["button"], ("plain_text",))
        if len(str(button.get("url", ""))) > LIMITS["url"]:
            errors.append(f"{where}.elements[{i}].url: too long")
        action_id = str(button.get("action_id", ""))
        if not action_id or len(action_id) > LIMITS["action_id"] or action_id in ids:
            errors.append(f"{where}.elements[{i}].action_id: missing, too long or not unique")
        ids.add(action_id)
    return errors


def _block(block: Any, where: str, ids: set[str]) -> list[str]:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "header":
        return _text_object(block.get("text"), f"{where}.text", LIMITS["header"], ("plain_text",))
    if kind == "section":
        return _section(block, where)
    if kind == "context":
        elements = block.get("elements", [])
        errors = [] if 0 < len(elements) <= 10 else [f"{where}: {len(elements)} elements, 1 to 10 allowed"]
        return errors + [
            e for i, el in enumerate(elements) for e in _text_object(el, f"{where}[{i}]", LIMITS["section"])
        ]
    if kind == "actions":
        return _actions(block, where, ids)
    if kind == "image":
        return [] if block.get("image_url") and block.get("alt_text") else [f"{where}: image_url and alt_text required"]
    return [f"{where}: unknown block type {kind!r}"]


def incoming_webhook(seen: Seen) -> list[str]:
    """Every rule of the incoming-webhook + Block Kit contract this request breaks (Slack: invalid_payload)."""
    if not seen.headers.get("Content-Type", "").startswith("application/json"):
        return ["Content-Type must be application/json"]
    try:
        message = seen.json()
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(message, dict) or not isinstance(message.get("text"), str) or not message["text"]:
        return ["a non-empty text fallback is required"]
    blocks = message.get("blocks", [])
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return ["blocks: 1 to 50 allowed"]
    ids: set[str] = set()
    return [e for i, block in enumerate(blocks) for e in _block(block, f"blocks[{i}]", ids)]


@pytest.fixture
def slack() -> Iterator[ContractServer]:
    path = "/services/T000/B000/XXXXXXXX"
    with ContractServer(incoming_webhook, Answer(200, "ok"), path=path).running() as server:
        yield server


def blocks_of(seen: Seen, kind: str) -> list[dict[str, Any]]:
    return [b for b in seen.json()["blocks"] if b["type"] == kind]


def test_trigger_message_has_header_fields_context_and_buttons(slack: ContractServer) -> None:
    assert SlackNotifier(slack.url).send(notification()).outcome == "delivered"
    (seen,) = slack.seen
    assert seen.violations == []
    message = seen.json()
    assert message["text"].startswith("[CRITICAL] node-07: GPU 3 fell off the bus")
    (header,) = blocks_of(seen, "header")
    assert header["text"]["text"].startswith(":red_circle: CRITICAL: node-07: GPU 3 fell off the bus")
    fields = [f["text"] for b in blocks_of(seen, "section") for f in b.get("fields", [])]
    assert "*Affected*\nnode `node-07`" in fields and "*Priority*\n512.0 GPU-hours at risk" in fields
    assert "*Alerts*\n2" in fields
    assert any(f.startswith("*Started*\n<!date^1767225600^") for f in fields)
    members = [b["text"]["text"] for b in blocks_of(seen, "section") if "text" in b]
    assert "GpuXidFatal" in members[0] and "TrainingHang" in members[0]
    (context,) = blocks_of(seen, "context")
    assert "incident `inc-42`" in context["elements"][0]["text"] and "reason `first`" in context["elements"][0]["text"]
    (actions,) = blocks_of(seen, "actions")
    assert [(e["text"]["text"], e["url"]) for e in actions["elements"]] == [
        ("Incident", "https://vigil.example.com/incidents/inc-42"),
        ("Runbook", "https://runbooks.example.com/xid-79"),
    ]


@pytest.mark.parametrize(("action", "word"), [("resolve", "RESOLVED"), ("acknowledge", "ACKNOWLEDGED")])
def test_resolve_and_acknowledge_are_follow_up_messages(slack: ContractServer, action: str, word: str) -> None:
    assert SlackNotifier(slack.url).send(notification(action=action, reason=action)).outcome == "delivered"
    (seen,) = slack.seen
    assert seen.violations == [] and seen.json()["text"].startswith(f"[{word}] node-07")
    assert word in blocks_of(seen, "header")[0]["text"]["text"]
    assert blocks_of(seen, "section") == []  # no fields: the trigger message already has them
    assert "incident `inc-42`" in blocks_of(seen, "context")[0]["elements"][0]["text"]


def test_user_text_cannot_forge_mentions_or_links(slack: ContractServer) -> None:
    evil = notification(summary="<!channel> disk full <https://evil.example|click>", source="node-<07>")
    assert SlackNotifier(slack.url).send(evil).outcome == "delivered"
    text = slack.seen[0].json()["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&lt;https://evil.example|click&gt;" in text


def test_oversized_incident_is_fitted_to_block_kit_limits(slack: ContractServer) -> None:
    members = [{"alertname": f"NodeLinkDown{i}", "starts_at": "2026-01-01T00:00:00Z"} for i in range(300)]
    links = [
        {"href": f"https://vigil.example.com/{'x' * (3000 if i == 0 else i)}", "text": "L" * 200} for i in range(12)
    ]
    big = notification(summary="S" * 5000, members=members, links=links, **{"class": "C" * 3000})
    assert SlackNotifier(slack.url).send(big).outcome == "delivered"
    assert slack.seen[0].violations == []
    (actions,) = blocks_of(slack.seen[0], "actions")
    assert len(actions["elements"]) == 5  # the over-long URL left out, then the first five
    assert "and 290 more" in blocks_of(slack.seen[0], "section")[1]["text"]["text"]


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        (Answer(400, "invalid_payload"), "permanent", None),
        (Answer(403, "action_prohibited"), "permanent", None),
        (Answer(404, "no_service"), "permanent", None),
        (Answer(410, "channel_is_archived"), "permanent", None),
        (Answer(429, "rate_limited", {"Retry-After": "1"}), "retryable", 1.0),
        (Answer(500, "rollup_error"), "retryable", None),
        (Answer(503, "service unavailable"), "retryable", None),
    ],
)
def test_slack_answers_map_to_outcomes(
    slack: ContractServer, answer: Answer, outcome: str, retry_after: float | None
) -> None:
    slack.script = [answer]
    result = SlackNotifier(slack.url).send(notification())
    assert (result.outcome, result.retry_after) == (outcome, retry_after)
    assert answer.body in result.reason  # Slack's own word says what to fix
    assert slack.url not in result.reason and "XXXXXXXX" not in result.reason  # the URL is the secret


def test_unreachable_slack_is_retryable() -> None:
    result = SlackNotifier(closed_port_url("/services/T/B/X")).send(notification())
    assert result.outcome == "retryable" and "/services/" not in result.reason


def test_the_contract_check_itself_catches_violations() -> None:
    """The server is only as good as its check: known-bad messages must be refused."""

    def check(message: dict[str, Any]) -> list[str]:
        return incoming_webhook(
            Seen("POST", "/", {"Content-Type": "application/json"}, json.dumps(message).encode(), [])
        )

    header = {"type": "header", "text": {"type": "plain_text", "text": "h"}}
    assert check({"text": "t", "blocks": [header]}) == []
    assert check({"blocks": [header]})  # no fallback text
    assert check({"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]})
    assert check({"text": "t", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]})
    fields = [{"type": "mrkdwn", "text": "f"}] * 11
    assert check({"text": "t", "blocks": [{"type": "section", "fields": fields}]})
    button = {"type": "button", "text": {"type": "plain_text", "text": "b"}, "url": "https://x", "action_id": "a"}
    assert check({"text": "t", "blocks": [{"type": "actions", "elements": [button, button]}]})  # duplicate id
    assert check({"text": "t", "blocks": [{"type": "fancy"}]})
    assert check({"text": "t", "blocks": [header] * 51})
