"""What every notifier is handed and what it promises back.

A :class:`Notification` is one page about one incident: the incident engine builds it, the durable
outbox stores it as JSON (:meth:`Notification.to_json`) and rebuilds it on every attempt
(:meth:`Notification.from_json`), and each :class:`Notifier` renders it for its receiver. ``send``
never raises for a delivery failure; it says whether the failure is worth retrying, because only the
retry stage decides what happens next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from vigil.alerting.payload import dedup_key

from vigil.events import Alert

Outcome = Literal["delivered", "retryable", "permanent"]
Action = Literal["trigger", "acknowledge", "resolve"]
# PagerDuty's four severities: the widest set any receiver understands (Vigil's own alerts use three).
NotificationSeverity = Literal["critical", "error", "warning", "info"]
NOTIFICATION_VERSION = "2"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait (HTTP Retry-After)

    @classmethod
    def delivered(cls) -> DeliveryResult:
        return cls("delivered")

    @classmethod
    def retryable(cls, reason: str, retry_after: float | None = None) -> DeliveryResult:
        return cls("retryable", reason, retry_after)

    @classmethod
    def permanent(cls, reason: str) -> DeliveryResult:
        return cls("permanent", reason)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]  # naive timestamps are refused at the edge


class Member(_Frozen):
    """One alert inside the incident."""

    alertname: str
    labels: dict[str, str] = Field(default_factory=dict)
    severity: NotificationSeverity = "warning"
    starts_at: UtcDatetime


_HTTP_URL = re.compile(r"^https?://\S+$")


class Link(_Frozen):
    href: Annotated[str, Field(pattern=_HTTP_URL.pattern)]
    text: str = ""


class Image(_Frozen):
    """A picture for receivers that show one (PagerDuty, Slack): a graph of the failing series."""

    src: Annotated[str, Field(pattern=r"^https://\S+$")]  # PagerDuty shows images served over HTTPS only
    href: str = ""
    alt: str = ""


class Domain(_Frozen):
    """The failure domain the incident is about: ``{"kind": "node", "id": "node-07"}``."""

    kind: str
    id: str


class Notification(_Frozen):
    """One notification about one incident, as every notifier receives it.

    ``dedup_key`` is the incident's key: every trigger, acknowledge and resolve of one incident carries
    the same key, so PagerDuty folds them into one alert and a webhook receiver can drop a resend.
    """

    dedup_key: Annotated[str, Field(min_length=1, max_length=255)]
    action: Action
    reason: Annotated[str, Field(min_length=1)]  # first, new_alerts_in_group, repeat_interval_elapsed, ...
    summary: Annotated[str, Field(min_length=1)]
    severity: NotificationSeverity
    source: Annotated[str, Field(min_length=1)]  # the affected host or domain
    timestamp: UtcDatetime
    component: str = ""
    group: str = ""
    class_: str = Field("", alias="class")  # the failure class
    incident_id: str = ""
    priority: float | None = None  # GPU-hours at risk: higher pages first
    domain: Domain | None = None
    members: tuple[Member, ...] = ()
    custom_details: dict[str, Any] = Field(default_factory=dict)
    links: tuple[Link, ...] = ()  # the incident page, the runbook
    images: tuple[Image, ...] = ()
    receiver: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO-8601 timestamps, ``class`` spelt as such) that :meth:`from_json` reads back."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        """Rebuild a stored notification; raises ``ValueError`` (a pydantic ``ValidationError``) if it is not one."""
        return cls.model_validate(data)


def legacy_notification(alert: Alert, reason: str, receiver: str = "") -> Notification:
    """One alert as a one-member incident: how an outbox row written before the incident engine (one
    alert per page) is delivered after an upgrade. New notifications come from ``alerting/pages.py``."""
    labels = {str(k): str(v) for k, v in alert.labels.items()}
    name = labels.get("alertname", "alert")
    resolved = alert.status == "resolved"
    domain = _domain_of(labels)
    details: dict[str, Any] = {k: v for k, v in alert.annotations.items() if k != "summary"}
    details |= {"fingerprint": alert.fingerprint, "labels": labels}
    if alert.recommended_action:
        details["recommended_action"] = alert.recommended_action
    runbook = alert.annotations.get("runbook_url", "")
    started = datetime.fromtimestamp(alert.starts_at, tz=UTC)
    return Notification(
        dedup_key=dedup_key(alert),
        action="resolve" if resolved else "trigger",
        reason=reason,
        summary=alert.annotations.get("summary") or f"{name} on {domain.id if domain else 'unknown'}",
        severity=alert.severity,
        source=labels.get("host") or (domain.id if domain else "") or labels.get("cluster") or "vigil",
        timestamp=datetime.fromtimestamp(alert.ends_at, tz=UTC) if resolved and alert.ends_at else started,
        component=_component_of(labels),
        group=labels.get("cluster", ""),
        class_=name,
        incident_id=alert.fingerprint,
        domain=domain,
        members=(Member(alertname=name, labels=labels, severity=alert.severity, starts_at=started),),
        custom_details=details,
        links=(Link(href=runbook, text="Runbook"),) if _HTTP_URL.match(runbook) else (),
        receiver=receiver,
    )


# Most specific first: the narrowest identity label an alert carries names its failure domain.
_DOMAIN_LABELS = (("gpu_index", "gpu"), ("disk_serial", "disk"), ("rank", "rank"), ("host", "node"), ("job_id", "job"))


def _domain_of(labels: dict[str, str]) -> Domain | None:
    for label, kind in _DOMAIN_LABELS:
        if label in labels:
            if kind == "gpu" and "host" in labels:
                return Domain(kind="gpu", id=f"{labels['host']}/gpu{labels['gpu_index']}")
            if kind == "rank" and "job_id" in labels:
                return Domain(kind="rank", id=f"{labels['job_id']}/rank{labels['rank']}")
            return Domain(kind=kind, id=labels[label])
    return None


def _component_of(labels: dict[str, str]) -> str:
    if "gpu_index" in labels:
        return f"gpu{labels['gpu_index']}"
    if "disk_serial" in labels:
        return f"disk {labels['disk_serial']}"
    return labels.get("job_id", "")


def from_legacy_payload(payload: dict[str, Any]) -> Notification:
    """An outbox row written before notifications became incidents (payload version "1": one alert dict),
    rebuilt so that rows pending across the upgrade are still delivered rather than dropped."""
    body = dict(payload["alert"])
    ends_at = body.get("ends_at")
    alert = Alert(
        fingerprint=str(body["fingerprint"]),
        status="resolved" if payload.get("status") == "resolved" else "firing",
        labels=body.get("labels", {}),
        annotations=body.get("annotations", {}),
        starts_at=datetime.fromisoformat(body["starts_at"]).timestamp(),
        ends_at=datetime.fromisoformat(ends_at).timestamp() if ends_at else None,
        severity=body.get("severity", "warning"),
        recommended_action=str(body.get("recommended_action", "")),
    )
    return legacy_notification(alert, str(payload.get("reason", "first"))).model_copy(
        update={"dedup_key": str(payload["dedup_key"])}
    )


class Notifier(Protocol):
    """Sends one notification. Never raises for a delivery failure: it returns a result instead,
    because only the retry stage decides what happens next."""

    def send(self, notification: Notification) -> DeliveryResult: ...

    def close(self) -> None: ...


def deliver(notifier: Notifier, stored: dict[str, Any]) -> DeliveryResult:
    """Rebuild a notification from its outbox JSON and send it. A row that is no notification at all
    cannot become one by retrying, so it is a permanent failure with the reason, never a crash."""
    try:
        notification = from_legacy_payload(stored) if stored.get("version") == "1" else Notification.from_json(stored)
    except (KeyError, TypeError, ValueError) as exc:  # a pydantic ValidationError is a ValueError
        return DeliveryResult.permanent(f"stored notification is invalid: {exc}")
    return notifier.send(notification)
