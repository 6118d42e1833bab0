"""An incident as the ``Notification`` every notifier renders: the one place a page is written.

The summary names the incident's domain and its most severe alert; ``members`` lists the alerts the
notification is about (firing first, at most ``MAX_MEMBERS``; the rest are counted in
``custom_details``); ``priority`` is the GPU-hours at risk; ``dedup_key`` is the group's (the
incident's key, unless a route's ``group_by`` splits it), so PagerDuty folds every trigger,
acknowledge and resolve about the incident into one alert.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from vigil.alerting.intake import SEVERITY_RANK
from vigil.alerting.model import Incident
from vigil.alerting.notifiers.base import Action, Domain, Link, Member, Notification

from vigil.events import Alert

MAX_MEMBERS = 50  # alerts listed in one notification; PagerDuty's custom_details stay well under its limit
_HTTP_URL = re.compile(r"^https?://\S+$")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _severity(alerts: Sequence[Alert], fallback: str) -> Any:
    firing = [a for a in alerts if a.status == "firing"] or list(alerts)
    return max((a.severity for a in firing), key=lambda s: SEVERITY_RANK.get(s, 0), default=fallback)


def page(
    incident: Incident,
    alerts: Sequence[Alert],
    reason: str,
    action: Action,
    dedup_key: str,
    receiver: str,
    now: float,
    base_url: str | None = None,
) -> Notification:
    ordered = sorted(alerts, key=lambda a: (a.status != "firing", -SEVERITY_RANK.get(a.severity, 0), a.starts_at))
    lead = ordered[0] if ordered else None
    labels = dict(lead.labels) if lead is not None else {}
    severity = _severity(ordered, incident.severity)
    firing = sum(1 for a in ordered if a.status == "firing")
    summary = _summary(incident, lead, firing, len(ordered))
    details: dict[str, Any] = {
        "incident": incident.id,
        "state": incident.state,
        "suspected_domain": f"{incident.domain.kind} {incident.domain.id}",
        "priority_gpu_hours": incident.priority,
        "gpus_at_risk": incident.detail.get("gpus", 0),
        "alerts_firing": firing,
        "alerts": len(ordered),
    }
    if lead is not None:  # the lead alert's own words (evidence, ETA, reason), beside the incident's
        details.update((k, v) for k, v in lead.annotations.items() if k != "summary" and k not in details)
    if incident.assignee:
        details["assignee"] = incident.assignee
    if lead is not None and lead.recommended_action:
        details["recommended_action"] = lead.recommended_action
    if len(ordered) > MAX_MEMBERS:
        details["alerts_not_listed"] = len(ordered) - MAX_MEMBERS
    return Notification(
        dedup_key=dedup_key,
        action=action,
        reason=reason,
        summary=summary,
        severity=severity,
        source=labels.get("host") or incident.domain.id or "vigil",
        timestamp=_utc(now if action != "trigger" or lead is None else min(a.starts_at for a in ordered)),
        component=f"gpu{labels['gpu_index']}" if labels.get("gpu_index") else labels.get("job_id", ""),
        group=labels.get("cluster", ""),
        class_=labels.get("alertname", "incident"),
        incident_id=str(incident.id),
        priority=incident.priority,
        domain=Domain(kind=incident.domain.kind, id=incident.domain.id),
        members=tuple(_member(a) for a in ordered[:MAX_MEMBERS]),
        custom_details=details,
        links=_links(incident, ordered, base_url),
        receiver=receiver,
    )


def _summary(incident: Incident, lead: Alert | None, firing: int, total: int) -> str:
    where = f"{incident.domain.kind} {incident.domain.id}"
    if lead is None:
        return incident.title or where
    what = lead.annotations.get("summary") or lead.labels.get("alertname", "alert")
    more = f" (+{total - 1} more alerts, {firing} firing)" if total > 1 else ""
    return f"[{where}] {what}{more}"


def _member(alert: Alert) -> Member:
    return Member(
        alertname=alert.labels.get("alertname", "alert"),
        labels={str(k): str(v) for k, v in alert.labels.items()},
        severity=alert.severity,
        starts_at=_utc(alert.starts_at),
    )


def _links(incident: Incident, alerts: Sequence[Alert], base_url: str | None) -> tuple[Link, ...]:
    links = []
    if base_url:
        links.append(Link(href=f"{base_url.rstrip('/')}/incidents/{incident.id}", text="Incident"))
    runbook = next((a.annotations["runbook_url"] for a in alerts if "runbook_url" in a.annotations), "")
    if _HTTP_URL.match(runbook):
        links.append(Link(href=runbook, text="Runbook"))
    return tuple(links)
