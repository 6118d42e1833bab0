"""Detections into alerts: the fingerprint, the alert's labels and annotations, and the transition rule.

Everything here is pure so that dedup, which is what keeps a person from being paged twice, is tested
without a database or a bus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from vigil.events import Alert, Detection

# Built once (json.dumps with arguments builds an encoder per call); the output is json.dumps's.
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
_SORTED = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str).encode

Reason = Literal["first", "escalated", "resolved", "no_change"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def alertname(detection: Detection) -> str:
    return str(detection.labels.get("alertname") or detection.detector)


def fingerprint(name: str, labels: Mapping[str, str], identity_labels: Sequence[str]) -> str:
    """sha256 over the alert name and the identity labels present, sorted; the first 16 hex chars.

    Only identity labels count, so a changed description or score never makes a new alert.
    JSON framing keeps ``a=b,c`` from colliding with ``a=b`` + ``c``.
    """
    identity = sorted((k, str(labels[k])) for k in set(identity_labels) if k in labels)
    digest = hashlib.sha256(_COMPACT([name, identity]).encode()).hexdigest()
    return digest[:16]


def to_alert(detection: Detection, identity_labels: Sequence[str], now: float) -> Alert:
    """The alert a detection describes, as if it were new (status from the detection's decision)."""
    name = alertname(detection)
    labels = {str(k): str(v) for k, v in detection.labels.items()}
    labels["alertname"] = name
    labels["severity"] = detection.severity
    annotations = {
        "summary": detection.summary,
        "reason": _SORTED(dict(detection.reason)),
        "detector": detection.detector,
        "score": format(detection.score, ".6g"),
        "series": detection.series,
    }
    action = detection.reason.get("action")
    resolved = detection.decision == "resolved"
    return Alert(
        fingerprint=fingerprint(name, labels, identity_labels),
        status=detection.decision,
        labels=labels,
        annotations=annotations,
        starts_at=detection.ts,
        ends_at=detection.ts if resolved else None,
        severity=detection.severity,
        recommended_action=str(action) if action is not None else "",
        updated_at=now,
    )


@dataclass(frozen=True, slots=True)
class Transition:
    reason: Reason
    alert: Alert | None  # the state to store and publish; None for no_change


def decide(current: Alert | None, candidate: Alert, escalate: bool = False) -> Transition:
    """What a detection (or prediction) does to the stored alert of its fingerprint.

    Events are replayed after a crash, so a firing event older than the end of the last episode,
    or a resolve older than the current episode's start, is history, not news. With ``escalate``
    (predictions: a filesystem whose ETA drops under an hour) a firing alert whose candidate is
    more severe becomes more severe in the same episode; severity never drops within an episode,
    so a replay of either event changes nothing.
    """
    if candidate.status == "firing":
        if current is not None and current.status == "firing":
            if escalate and candidate.starts_at >= current.starts_at and _more_severe(candidate, current):
                return Transition("escalated", _escalated(current, candidate))
            return Transition("no_change", None)
        if current is not None and current.ends_at is not None and candidate.starts_at <= current.ends_at:
            return Transition("no_change", None)
        return Transition("first", candidate)
    if current is None or current.status != "firing" or candidate.starts_at < current.starts_at:
        return Transition("no_change", None)
    resolved_at = candidate.starts_at
    return Transition(
        "resolved", replace(current, status="resolved", ends_at=resolved_at, updated_at=candidate.updated_at)
    )


def _more_severe(candidate: Alert, current: Alert) -> bool:
    return SEVERITY_RANK.get(candidate.severity, 0) > SEVERITY_RANK.get(current.severity, 0)


def _escalated(current: Alert, candidate: Alert) -> Alert:
    """The same episode (fingerprint, start, dedup key) told again with the candidate's severity and words."""
    return replace(
        current,
        severity=candidate.severity,
        labels=candidate.labels,
        annotations=candidate.annotations,
        recommended_action=candidate.recommended_action,
        updated_at=candidate.updated_at,
    )
