"""What the API's routes work with (:class:`ApiDeps`), the JSON shapes they answer in, and how a
service-layer refusal becomes an HTTP answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

from fastapi import Depends, HTTPException
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from vigil.alerting.approvals import ApprovalsProvider, NoApprovals
from vigil.alerting.auth import Requires, TokenBook
from vigil.alerting.engine import Engine
from vigil.alerting.incident_reader import IncidentReader, MemberView
from vigil.alerting.model import Incident, Silence, TimelineEntry
from vigil.alerting.payload import alert_json
from vigil.alerting.tokens import Principal

from vigil.clock import to_iso

HealthCheck = Callable[[], dict[str, Any]]

Viewer = Annotated[Principal, Depends(Requires("viewer"))]
Operator = Annotated[Principal, Depends(Requires("operator"))]
Admin = Annotated[Principal, Depends(Requires("admin"))]
Intake = Annotated[Principal, Depends(Requires("intake"))]


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """Everything the API serves from: reads through ``reader``, people's actions through ``engine``
    (the service's own, so they take turns with the consumer), tokens through ``book``."""

    reader: IncidentReader
    engine: Engine
    book: TokenBook
    registry: CollectorRegistry
    health: HealthCheck
    approvals: ApprovalsProvider = field(default_factory=NoApprovals)
    held: Callable[[], Mapping[str, float]] = dict  # receiver -> held until (the outbox workers' backoff)
    on_ingest: Callable[[], None] | None = None  # after the intake commits: the service publishes


def refuse(message: str, status: int = 409) -> NoReturn:
    """A service-layer refusal: ``"field: why"`` is a 422 naming the body field, anything else ``status``."""
    field_name, sep, why = message.partition(": ")
    if sep and field_name.isidentifier():
        raise RequestValidationError([{"loc": ("body", field_name), "msg": why, "type": "value_error"}])
    raise HTTPException(status_code=status, detail=message)


def not_found(what: str) -> NoReturn:
    raise HTTPException(status_code=404, detail=f"no {what}")


def ts(value: float | None) -> str | None:
    return to_iso(value) if value is not None else None


def incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "key": incident.key,
        "domain": incident.domain.key,
        "state": incident.state,
        "severity": incident.severity,
        "priority": incident.priority,
        "title": incident.title,
        "opened_at": ts(incident.opened_at),
        "updated_at": ts(incident.updated_at),
        "acknowledged_at": ts(incident.acknowledged_at),
        "acknowledged_by": incident.acknowledged_by,
        "resolved_at": ts(incident.resolved_at),
        "resolved_by": incident.resolved_by,
        "assignee": incident.assignee,
        "escalation_policy": incident.escalation_policy,
        "escalation_level": incident.escalation_level,
        "merged_into": incident.merged_into,
        "detail": dict(incident.detail),
    }


def member_json(view: MemberView) -> dict[str, Any]:
    return {
        "fingerprint": view.member.fingerprint,
        "role": view.member.role,
        "joined_at": ts(view.member.joined_at),
        "muted": view.muted,
        "alert": alert_json(view.alert) if view.alert is not None else None,
    }


def entry_json(entry: TimelineEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": ts(entry.at), "kind": entry.kind, "actor": entry.actor, "detail": dict(entry.detail)}


def silence_json(silence: Silence, now: float) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": [str(m) for m in silence.matchers],
        "starts_at": ts(silence.starts_at),
        "ends_at": ts(silence.ends_at),
        "created_by": silence.created_by,
        "comment": silence.comment,
        "created_at": ts(silence.created_at),
        "expired_by": silence.expired_by,
        "state": silence.state(now),
    }
