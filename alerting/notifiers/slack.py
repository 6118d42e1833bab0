"""Slack incoming webhook with a Block Kit message.

A trigger is a header (severity and summary), a section of fields (affected domain, priority, how
many alerts, when it started), the member alerts, a context line (incident, class, reason) and
buttons to the incident page and its runbook; ``text`` is the plain fallback that notifications and
screen readers show. An incoming webhook cannot edit a message it posted (that needs a bot token and
``chat.update``), so an acknowledge or resolve is a short follow-up message naming the same incident.

Every text is fitted to Block Kit's limits (header 150 characters, a field 2000, a section 3000,
a button label 75, a button URL 3000, at most 10 fields and 50 blocks); user text is escaped for
mrkdwn (``&``, ``<``, ``>``), so an alert label cannot forge a link or a mention.

Answers (Slack's incoming-webhook errors): 200 ``ok`` delivered; 429 (about one message a second
per webhook) retryable honouring ``Retry-After``; 5xx retryable; 400 ``invalid_payload``, 403
``action_prohibited``, 404 ``no_service``/``channel_not_found`` and 410 ``channel_is_archived``
permanent, with Slack's word in the reason.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from vigil.alerting.notifiers.base import DeliveryResult, Notification
from vigil.alerting.notifiers.http import json_client, post
from vigil.alerting.notifiers.text import fit

HEADER_LIMIT = 150
FIELD_LIMIT = 2000
SECTION_LIMIT = 3000
BUTTON_TEXT_LIMIT = 75
BUTTON_URL_LIMIT = 3000
MAX_BUTTONS = 5
MEMBERS_SHOWN = 10
_MARK = {"critical": ":red_circle:", "error": ":large_orange_circle:", "warning": ":large_yellow_circle:"}
_FOLLOW_UP = {"acknowledge": (":eyes:", "ACKNOWLEDGED"), "resolve": (":white_check_mark:", "RESOLVED")}


def escape(text: str) -> str:
    """Slack mrkdwn control characters, escaped as Slack documents."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": fit(text, limit), "emoji": True}


def _mrkdwn(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": fit(text, limit)}


def _date(n: Notification) -> str:
    """Slack renders ``<!date^...>`` in the reader's time zone; the fallback is UTC."""
    when = min((m.starts_at for m in n.members), default=n.timestamp)
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{when.isoformat()}>"


def _title(n: Notification) -> tuple[str, str]:
    """(header with emoji, plain fallback) for the message."""
    if n.action in _FOLLOW_UP:
        mark, word = _FOLLOW_UP[n.action]
    else:
        mark, word = _MARK.get(n.severity, ":large_blue_circle:"), n.severity.upper()
    return f"{mark} {word}: {n.summary}", f"[{word}] {escape(n.summary)} ({escape(n.source)})"


def _fields(n: Notification) -> list[dict[str, Any]]:
    affected = f"{n.domain.kind} `{escape(n.domain.id)}`" if n.domain else f"`{escape(n.source)}`"
    priority = f"{n.priority:.1f} GPU-hours at risk" if n.priority is not None else "not rated"
    pairs = [("Affected", affected), ("Priority", priority), ("Alerts", str(len(n.members)))]
    pairs += [("Started", _date(n))]
    if n.class_:
        pairs.append(("Class", escape(n.class_)))
    return [_mrkdwn(f"*{name}*\n{value}", FIELD_LIMIT) for name, value in pairs]


def _members(n: Notification) -> dict[str, Any] | None:
    if not n.members:
        return None
    lines = []
    for m in n.members[:MEMBERS_SHOWN]:
        where = ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items()) if k in ("host", "gpu_index", "job_id"))
        lines.append(f"• *{escape(m.alertname)}* ({m.severity}) {escape(where)}")
    if len(n.members) > MEMBERS_SHOWN:
        lines.append(f"… and {len(n.members) - MEMBERS_SHOWN} more")
    return {"type": "section", "text": _mrkdwn("\n".join(lines), SECTION_LIMIT)}


def _context(n: Notification) -> dict[str, Any]:
    parts = [f"incident `{escape(n.incident_id or n.dedup_key)}`", f"reason `{escape(n.reason)}`"]
    if n.receiver:
        parts.append(f"receiver `{escape(n.receiver)}`")
    return {"type": "context", "elements": [_mrkdwn(" · ".join(parts), SECTION_LIMIT)]}


def _buttons(n: Notification) -> dict[str, Any] | None:
    """Link buttons (the incident, the runbook); a URL Slack would refuse is left out, not truncated."""
    elements = [
        {
            "type": "button",
            "text": _plain(link.text or link.href, BUTTON_TEXT_LIMIT),
            "url": link.href,
            "action_id": f"vigil-link-{index}",
        }
        for index, link in enumerate(n.links)
        if len(link.href) <= BUTTON_URL_LIMIT
    ][:MAX_BUTTONS]
    return {"type": "actions", "elements": elements} if elements else None


def message(n: Notification) -> dict[str, Any]:
    """The incoming-webhook body for ``n``."""
    header, fallback = _title(n)
    blocks: list[dict[str, Any] | None] = [{"type": "header", "text": _plain(header, HEADER_LIMIT)}]
    if n.action == "trigger":
        blocks += [{"type": "section", "fields": _fields(n)}, _members(n)]
        blocks += [
            {"type": "image", "image_url": i.src, "alt_text": fit(i.alt or "graph", FIELD_LIMIT)} for i in n.images[:1]
        ]
    blocks += [_context(n), _buttons(n)]
    return {"text": fit(fallback, SECTION_LIMIT), "blocks": [b for b in blocks if b is not None]}


class SlackNotifier:
    def __init__(self, webhook_url: str, timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        self._url = webhook_url  # a secret: it is the only credential an incoming webhook has
        self._client = client or json_client(timeout)

    def send(self, notification: Notification) -> DeliveryResult:
        body = json.dumps(message(notification), separators=(",", ":"), ensure_ascii=False).encode()
        return post(self._client, self._url, body, {"Content-Type": "application/json; charset=utf-8"})

    def close(self) -> None:
        self._client.close()
