"""Scoring a run against the simulator's ground truth: which faults paged, how fast, what was noise.

An alert is attributed to a fault when they share an identity label (host, gpu_index, job_id, rank)
and agree on every identity label they share, and the alert fired between the fault's start (less
a small clock slack) and its end plus a grace period. Faults may name the job they disturb
(``detail.job_id``): a job-level alert (a hang after a GPU fell off the bus) is attributed to that
fault, so it is not noise, but detection and latency count only alerts that name the fault's own
entity: with faults overlapping, a job-wide alert caused by one GPU must not time another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vigil.events import FaultInjection

IDENTITY = ("host", "gpu_index", "job_id", "rank")


# Notifications that ring a pager: an incident's first page, a repeat, a reopened incident. An update of
# an incident already paged (new_alerts_in_group, escalated severity) tells more about the same page.
PAGE_REASONS = frozenset({"first", "repeat_interval_elapsed", "reopened"})


@dataclass(frozen=True, slots=True)
class Notification:
    received_at: float
    status: str
    fingerprint: str  # the incident's id
    labels: Mapping[str, str]  # the first member alert's
    reason: str = ""  # the alerting service's: first, new_alerts_in_group, resolved, escalated, ...
    dedup_key: str = ""  # the incident's key: every notification about one incident carries it
    members: tuple[Mapping[str, str], ...] = ()  # every member alert's labels (the first one's if empty)
    priority: float | None = None  # GPU-hours at risk
    summary: str = ""
    domain: str = ""

    @property
    def is_page(self) -> bool:
        return self.status == "firing" and self.reason in PAGE_REASONS

    def label_sets(self) -> tuple[Mapping[str, str], ...]:
        return self.members or (self.labels,)


def names_fault(fault: FaultInjection, note: Notification, slack_s: float, grace_s: float) -> bool:
    """The notification names the fault's own entity (one of its member alerts does) in its window."""
    return any(
        names_entity(fault, labels) and matches(fault, labels, note.received_at, slack_s, grace_s)
        for labels in note.label_sets()
    )


def fault_scope(fault: FaultInjection) -> dict[str, str]:
    scope = {k: str(v) for k, v in fault.entity.items() if k in IDENTITY}
    job = fault.detail.get("job_id") if isinstance(fault.detail, Mapping) else None
    if job and "job_id" not in scope:
        scope["job_id"] = str(job)
    return scope


def matches(fault: FaultInjection, labels: Mapping[str, str], at: float, slack_s: float, grace_s: float) -> bool:
    end = fault.end if fault.end is not None else float("inf")
    if not fault.start - slack_s <= at <= end + grace_s:
        return False
    scope = fault_scope(fault)
    shared = [k for k in IDENTITY if k in scope and k in labels]
    if not shared:
        return False
    # A host-wide or job-wide alert covers a narrower fault, but a different GPU or rank does not.
    return all(scope[k] == str(labels[k]) for k in shared)


def names_entity(fault: FaultInjection, labels: Mapping[str, str]) -> bool:
    """The alert shares a label with the fault's own entity (not just the job it disturbs). The job
    names only a job fault: a job-wide alert (a NaN loss) does not name one slow rank of that job."""
    own = [k for k in IDENTITY if k in fault.entity]
    specific = [k for k in own if k != "job_id"] or own
    return any(k in labels for k in specific)


def score_run(
    faults: Iterable[FaultInjection],
    notifications: Iterable[Notification],
    slack_s: float = 2.0,
    grace_s: float = 30.0,
) -> dict[str, Any]:
    """The ``vigil up --report`` document: per fault, whether and when it was detected (the first firing
    notification naming it), how many pages named it, and the noise; with the incidents told."""
    latest: dict[str, FaultInjection] = {}
    for fault in faults:  # start and end events share a fault_id; keep the most complete
        if fault.fault_id not in latest or fault.end is not None:
            latest[fault.fault_id] = fault
    everything = list(notifications)
    firing = sorted((n for n in everything if n.status == "firing"), key=lambda n: n.received_at)
    attributed: set[int] = set()
    rows = []
    for fault in sorted(latest.values(), key=lambda f: f.start):
        hits = [
            i
            for i, n in enumerate(firing)
            if any(matches(fault, labels, n.received_at, slack_s, grace_s) for labels in n.label_sets())
        ]
        attributed.update(hits)
        naming = [firing[i] for i in hits if names_fault(fault, firing[i], slack_s, grace_s)]
        first = naming[0] if naming else None
        rows.append(
            {
                "fault_id": fault.fault_id,
                "kind": fault.kind,
                "entity": dict(fault.entity),
                "injected_at": fault.start,
                "ended_at": fault.end,
                "detected": first is not None,
                "alerted_at": first.received_at if first else None,
                "latency_s": round(first.received_at - fault.start, 3) if first else None,
                "alerts": sorted({lb.get("alertname", "?") for i in hits for lb in firing[i].label_sets()}),
                "pages": sum(1 for n in naming if n.is_page),
                "incidents": sorted({n.fingerprint for n in naming}),
            }
        )
    false = [n for i, n in enumerate(firing) if i not in attributed and n.is_page]
    return {
        "faults": rows,
        "false_alerts": len(false),
        "false_alert_details": [{"labels": dict(n.labels), "at": n.received_at} for n in false],
        "incidents": len({n.fingerprint for n in everything if n.fingerprint}),
        "notifications": len(everything),
    }
