"""The pure half of ``vigil chaos``: when to kill what, and how a run is scored against ground truth.

Definitions (the README and ``vigil chaos --help`` say the same):

- ``faults``: distinct ground-truth faults (``FaultInjection`` events on the groundtruth topic,
  merged by ``fault_id``) that started within the measured ``--duration``;
- a fault is **paged** when the measuring receiver got a firing notification about an incident
  one of whose alerts names the fault's own entity, between its start (less ``slack_s``) and its
  end plus ``grace_s``, the rule of ``vigil up --report`` (``report.py``);
- ``paged_twice``: paged, and the incident (``dedup_key``) of one of those notifications got its
  first page twice (the second time at any moment of the run; an update is not a second page);
  ``paged_once``: paged and not twice; ``lost``: never paged. The three partition ``faults``;
- ``max_recovery_s``: over every kill, the longest time from the SIGKILL until the restarted
  service was healthy again (null when one never recovered before the run ended; 0 without kills).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vigil.cli.report import Notification, names_fault
from vigil.events import FaultInjection

UNITS = ("analytics", "alerting", "sim", "broker")


@dataclass(frozen=True, slots=True)
class PlannedKill:
    at: float  # seconds after the simulator's start
    unit: str


def plan_kills(seed: int, kills: int, warmup: float, until: float) -> list[PlannedKill]:
    """``kills`` SIGKILLs at seeded moments in [warmup, until], every unit in turn (seeded order).

    The span is cut into equal slots and each kill falls in the first half of its own slot, so two
    kills are at least half a slot apart and a restart is not still under way at the next kill.
    """
    rng = random.Random(seed)
    order = list(UNITS)
    rng.shuffle(order)
    slot = (until - warmup) / kills if kills else 0.0
    return [
        PlannedKill(round(warmup + slot * (i + rng.uniform(0.0, 0.5)), 3), order[i % len(order)]) for i in range(kills)
    ]


def merge_truth(events: Iterable[FaultInjection]) -> list[FaultInjection]:
    """One fault per ``fault_id``: the earliest start and the latest end any event gave it."""
    merged: dict[str, FaultInjection] = {}
    for event in events:
        seen = merged.get(event.fault_id)
        if seen is None:
            merged[event.fault_id] = event
            continue
        ends = [e for e in (seen.end, event.end) if e is not None]
        start = min(seen.start, event.start)
        merged[event.fault_id] = FaultInjection(
            seen.fault_id, seen.kind, seen.entity, start, max(ends) if ends else None, seen.detail
        )
    return sorted(merged.values(), key=lambda f: f.start)


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    fault: FaultInjection
    pages: tuple[Notification, ...]  # firing notifications naming its entity in its window
    resent: bool = False  # one of their episodes reached the pager more than once (at any time)

    @property
    def verdict(self) -> str:
        if not self.pages:
            return "lost"
        return "paged_twice" if self.resent else "paged_once"


def score_faults(
    faults: Iterable[FaultInjection],
    notifications: Iterable[Notification],
    slack_s: float = 2.0,
    grace_s: float = 30.0,
) -> list[FaultOutcome]:
    firing = [n for n in notifications if n.status == "firing"]
    # A resend may come long after the fault (an outbox row sent again after a restart): count each
    # incident's first pages (its dedup key) over the whole run, not only in the fault's window.
    # Updates of an incident (new alerts in it, a raised severity) are the same page told more.
    episodes = Counter(n.dedup_key for n in firing if n.dedup_key and n.reason == "first")
    outcomes = []
    for fault in faults:
        pages = tuple(n for n in firing if names_fault(fault, n, slack_s, grace_s))
        outcomes.append(FaultOutcome(fault, pages, any(episodes[n.dedup_key] > 1 for n in pages if n.dedup_key)))
    return outcomes


def summary(
    outcomes: list[FaultOutcome], dlq: int, restarts: dict[str, int], recoveries: list[float | None]
) -> dict[str, Any]:
    """The printed document: exactly these seven keys."""
    verdicts = Counter(o.verdict for o in outcomes)
    recovered = [r for r in recoveries if r is not None]
    worst = round(max(recovered, default=0.0), 1) if len(recovered) == len(recoveries) else None
    return {
        "faults": len(outcomes),
        "paged_once": verdicts["paged_once"],
        "lost": verdicts["lost"],
        "paged_twice": verdicts["paged_twice"],
        "dlq": dlq,
        "restarts": dict(restarts),
        "max_recovery_s": worst,
    }
