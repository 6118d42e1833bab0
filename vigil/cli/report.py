"""Scoring a run against the simulator's ground truth: which faults paged, how fast, what was noise,
what remediation repaired, and how much of the run the training job spent making progress.

An alert is attributed to a fault when they share an identity label (host, gpu_index, job_id, rank)
and agree on every identity label they share, and the alert fired between the fault's start (less
a small clock slack) and its end plus a grace period; for a fault that remediation repaired, the end
is when its node came back into service (draining, rebooting and resuming a node are the fault's
doing too). Faults may name the job they disturb (``detail.job_id``): a job-level alert (a hang
after a GPU fell off the bus) is attributed to that fault, so it is not noise, but detection and
latency count only alerts that name the fault's own entity: with faults overlapping, a job-wide
alert caused by one GPU must not time another.

A page that no fault explains but whose alerts are all about a node remediation had drained for a
fault (while it was out of service, plus the grace period) is counted apart, as ``drained_node_alerts``
rather than ``false_alerts``: a drained node's GPUs go idle, and the detectors see that change; the
incident engine does not yet mute a node under remediation.

Remediation per fault (from the simulator's ground truth, ``detail.remediation``): ``remediated``
(a reset or reboot asked for by remediation cleared it), ``drained_at``, ``repaired_at``,
``returned_at`` (its node back in service, which the runbooks do only after verification),
``recovered_at`` (``returned_at`` for a remediated fault; otherwise the fault's end, when its node
was fixed by hand; null for a fault still unrepaired when the run stopped) and
``time_to_recover_s``.

ETTR, the effective training time ratio (:class:`Progress`): productive training time over wall time.
Productive time is the summed duration of the job's completed steps that still count: a step done
again after a restart from a checkpoint (its number comes round again) no longer counts, and time
with no step completing (stopped by a fault, restarting, hung, waiting for a node) adds nothing.
Wall time runs from the start of the job's first step seen to the newest telemetry seen (the fleet's
clock, so the report's own lag does not count).
"""

from __future__ import annotations

from collections import deque
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


def remedy(fault: FaultInjection) -> Mapping[str, Any]:
    """What remediation did about the fault (drained_at, repaired_at, repaired_by, returned_at), or {}."""
    found = fault.detail.get("remediation") if isinstance(fault.detail, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def effective_end(fault: FaultInjection) -> float:
    """The fault's end, or for a repaired one the moment its node was back in service (inf: still on)."""
    if fault.end is None:
        return float("inf")
    returned = remedy(fault).get("returned_at")
    return max(fault.end, float(returned)) if isinstance(returned, int | float) else fault.end


def recovery(fault: FaultInjection) -> dict[str, Any]:
    """The report's remediation columns for one fault (see the module docstring)."""
    done = remedy(fault)
    remediated = "repaired_at" in done
    if remediated:
        recovered = done.get("returned_at")
    elif "drained_at" in done:
        recovered = None  # taken out by the robot and never repaired before the run stopped
    else:
        recovered = fault.end
    return {
        "remediated": remediated,
        "drained_at": done.get("drained_at"),
        "repaired_at": done.get("repaired_at"),
        "repaired_by": done.get("repaired_by"),
        "returned_at": done.get("returned_at"),
        "recovered_at": recovered,
        "time_to_recover_s": round(float(recovered) - fault.start, 3) if recovered is not None else None,
    }


def matches(fault: FaultInjection, labels: Mapping[str, str], at: float, slack_s: float, grace_s: float) -> bool:
    end = effective_end(fault)
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
                **recovery(fault),
            }
        )
    rest = [n for i, n in enumerate(firing) if i not in attributed and n.is_page]
    drained = [n for n in rest if any(on_drained_node(f, n, grace_s) for f in latest.values())]
    false = [n for n in rest if n not in drained]
    return {
        "faults": rows,
        "false_alerts": len(false),
        "false_alert_details": [{"labels": dict(n.labels), "at": n.received_at} for n in false],
        "drained_node_alerts": len(drained),
        "drained_node_alert_details": [{"labels": dict(n.labels), "at": n.received_at} for n in drained],
        "incidents": len({n.fingerprint for n in everything if n.fingerprint}),
        "notifications": len(everything),
    }


def on_drained_node(fault: FaultInjection, note: Notification, grace_s: float) -> bool:
    """The page is about a node that remediation had taken out of service for this fault (its other
    GPUs idle while it is drained: a consequence of the remediation, not of a fault of their own);
    every member alert of the incident is about that node."""
    done = remedy(fault)
    drained, returned = done.get("drained_at"), done.get("returned_at")
    host = fault.entity.get("host")
    if host is None or not isinstance(drained, int | float):
        return False
    if any(labels.get("host") != host for labels in note.label_sets()):
        return False
    until = float(returned) if isinstance(returned, int | float) else float("inf")
    return float(drained) <= note.received_at <= until + grace_s


class Progress:
    """ETTR's numerator for one job, from its training steps in the order they were published.

    Feed it one rank's steps (every rank completes every step). A step number at or below one already
    seen is a restart from a checkpoint: the steps from that number on, done before, stop counting.
    A restart never reaches back further than ``horizon`` steps, so older steps are folded into a sum.
    """

    def __init__(self, horizon: int = 100_000) -> None:
        self._recent: deque[tuple[int, float]] = deque()
        self._horizon = horizon
        self.productive_s = 0.0
        self.lost_steps = 0
        self.restarts = 0
        self.first_start = float("inf")  # when the first step seen began

    def add(self, step: int, step_time_s: float, ts: float) -> None:
        self.first_start = min(self.first_start, ts - step_time_s)
        if self._recent and step <= self._recent[-1][0]:
            self.restarts += 1
            while self._recent and self._recent[-1][0] >= step:
                self.productive_s -= self._recent.pop()[1]
                self.lost_steps += 1
        self._recent.append((step, step_time_s))
        self.productive_s += step_time_s
        if len(self._recent) > self._horizon:
            self._recent.popleft()  # final: its time stays in productive_s

    def summary(self, end: float) -> dict[str, Any]:
        """Figures up to ``end`` (the fleet's newest timestamp)."""
        wall = end - self.first_start if self.first_start < end else 0.0
        return {
            "productive_s": round(self.productive_s, 3),
            "wall_s": round(wall, 3),
            "ettr": round(self.productive_s / wall, 4) if wall > 0 else None,
            "lost_steps": self.lost_steps,
            "restarts": self.restarts,
        }
