"""One canary round against one arm: readiness, every golden item once, checked and timed.

The result is a ``ProbeResult`` whatever the server did: not ready, timing out, answering garbage or
answering wrongly each become failed items with the reason, never an exception, so a round always
reaches the results topic. Items run one at a time (each is a real request a user could send) within
the round's budget (``schedule.round_timeout``); items not sent by then fail with that reason.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable

from vigil.alerting.canary.checks import check
from vigil.alerting.canary.clients import Answer, Client
from vigil.alerting.canary.spec import Arm, Item, Probe

from vigil.events import ProbeItem, ProbeResult

ANSWER_CHARS = 300  # of each answer kept in the result (the incident shows them)


def target_of(probe: Probe, arm: Arm) -> str:
    return f"{probe.name}@{arm.name}"


def run_round(
    probe: Probe,
    arm: Arm,
    client: Client,
    number: int,
    now: Callable[[], float],
    trigger: str = "schedule",
) -> ProbeResult:
    started = now()
    why_not = client.ready(arm)
    if why_not is not None:
        items = tuple(ProbeItem(i.id, False, 0.0, why_not) for i in probe.items)
        return _result(probe, arm, started, number, trigger, items, arm.version or "", f"not ready: {why_not}")
    deadline = time.monotonic() + probe.schedule.round_timeout
    outcomes: list[ProbeItem] = []
    versions: Counter[str] = Counter()
    for item in probe.items:
        if time.monotonic() >= deadline:
            outcomes.append(ProbeItem(item.id, False, 0.0, f"not sent: round budget {probe.schedule.round_timeout:g}s"))
            continue
        answer = client.ask(arm, item)
        if answer.version:
            versions[answer.version] += 1
        outcomes.append(_item(item, answer))
    version = arm.version or (versions.most_common(1)[0][0] if versions else "")
    return _result(probe, arm, started, number, trigger, tuple(outcomes), version, _detail(outcomes))


def _item(item: Item, answer: Answer) -> ProbeItem:
    latency = _seconds(answer.latency_s)
    ttft = _seconds(answer.ttft_s) if answer.ttft_s is not None else None
    text = answer.text[:ANSWER_CHARS]
    if answer.error is not None:
        return ProbeItem(item.id, False, latency, answer.error, text, None, ttft)
    outcome = check(item.expect, answer.value)
    score = outcome.score if outcome.score is None or outcome.score == outcome.score else None  # NaN: none
    return ProbeItem(item.id, outcome.ok, latency, outcome.reason, text, score, ttft)


def _seconds(value: float) -> float:
    return min(max(value, 0.0), 86_400.0)  # the codec's range; a clock step cannot make it negative


def _detail(items: list[ProbeItem]) -> str:
    failed = [i for i in items if not i.ok]
    if not failed:
        return ""
    shown = "; ".join(f"{i.id}: {i.reason}" for i in failed[:3])
    return f"{len(failed)} of {len(items)} items failed: {shown}"[:1000]


def _result(
    probe: Probe,
    arm: Arm,
    started: float,
    number: int,
    trigger: str,
    items: tuple[ProbeItem, ...],
    version: str,
    detail: str,
) -> ProbeResult:
    answered = [i.latency_s for i in items if i.ok or i.answer]
    ttfts = [i.ttft_s for i in items if i.ttft_s is not None]
    passed = sum(i.ok for i in items)
    return ProbeResult(
        ts=started,
        target=target_of(probe, arm),
        model=probe.model,
        ok=passed == len(items) and not detail,
        latency_s=statistics.median(answered) if answered else 0.0,
        quality=passed / len(items) if items else None,
        detail=detail,
        probe=probe.name,
        version=version,
        node=arm.node or "",
        protocol=probe.protocol,
        round=number,
        passed=passed,
        total=len(items),
        ttft_s=statistics.median(ttfts) if ttfts else None,
        trigger=trigger,
        items=items,
    )
