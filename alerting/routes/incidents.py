"""``/api/v1/incidents``: the list (filters, priority order, cursor pages), one incident with its members
and timeline, and what an operator does to one (acknowledge, assign, note, resolve, reopen).

Every action goes through the engine (``Engine.acknowledge``...): one transaction that changes the
incident, puts an entry with the caller's token name on its timeline and, where receivers were told,
tells them (an acknowledge or resolve reaches PagerDuty on the incident's dedup key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Body, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from vigil.alerting.engine import IncidentError
from vigil.alerting.incident_reader import IncidentFilter, IncidentPage, IncidentPosition
from vigil.alerting.model import Incident, IncidentState
from vigil.alerting.routes.context import (
    ApiDeps,
    Operator,
    Viewer,
    entry_json,
    incident_json,
    member_json,
    not_found,
    refuse,
)

from vigil.events import Severity

INCIDENTS_PATH = "/api/v1/incidents"
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssignBody(_Body):
    assignee: Annotated[str, Field(max_length=200, description="who has it; empty unassigns")]


class NoteBody(_Body):
    text: Annotated[str, Field(min_length=1, max_length=10_000, pattern=r"\S")]


class ActionBody(_Body):
    note: Annotated[str, Field(max_length=10_000)] = ""


OptionalNote = Annotated[ActionBody | None, Body()]


def incident_filter(
    state: list[IncidentState] | None, min_priority: float | None, domain: str | None, severity: Severity | None
) -> IncidentFilter:
    return IncidentFilter(tuple(state or ()), min_priority, domain or None, severity)


def page_json(page: IncidentPage, query: dict[str, Any]) -> dict[str, Any]:
    cursor = page.next.cursor() if page.next is not None else None
    follow = {k: v for k, v in query.items() if v not in (None, [], "")} | {"cursor": cursor}
    return {
        "incidents": [incident_json(i) for i in page.incidents],
        "next_cursor": cursor,
        "next": f"{INCIDENTS_PATH}?{urlencode(follow, doseq=True)}" if cursor is not None else None,
    }


def position(cursor: str | None) -> IncidentPosition | None:
    try:
        return IncidentPosition.parse(cursor) if cursor else None
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("query", "cursor"), "msg": str(exc), "type": "value_error"}]) from exc


def perform(incident_id: int, change: Callable[[], Incident]) -> Incident:
    """One of the engine's changes; its IncidentError becomes 404 (no such incident), 422 (a field) or 409."""
    try:
        return change()
    except IncidentError as exc:
        if str(exc) == f"no incident {incident_id}":
            not_found(f"incident {incident_id}")
        refuse(str(exc))


def add_incident_routes(app: FastAPI, deps: ApiDeps) -> None:
    """On the app itself, not an APIRouter: the role check reads the app's own routes."""
    reader, engine = deps.reader, deps.engine

    @app.get(INCIDENTS_PATH, tags=["incidents"])
    def list_incidents(
        _: Viewer,
        state: Annotated[list[IncidentState] | None, Query(description="repeat for several")] = None,
        min_priority: Annotated[float | None, Query(ge=0, description="GPU-hours at risk, at least")] = None,
        domain: Annotated[str | None, Query(max_length=300, description="a kind (node) or one (node:node-07)")] = None,
        severity: Severity | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> dict[str, Any]:
        """Incidents, most GPU-hours at risk first, ``limit`` per page: ``{"incidents": [...],
        "next_cursor", "next"}``; pass ``cursor=next_cursor`` with the same filters (or follow ``next``)."""
        where = incident_filter(state, min_priority, domain, severity)
        page = reader.incidents_page(where, limit, position(cursor))
        query = {"state": state or [], "min_priority": min_priority, "domain": domain, "severity": severity}
        return page_json(page, {**query, "limit": limit})

    @app.get(INCIDENTS_PATH + "/{incident_id}", tags=["incidents"])
    def get_incident(_: Viewer, incident_id: int) -> dict[str, Any]:
        """One incident, its members (each with its alert as stored now) and its timeline, oldest first."""
        incident = reader.incident(incident_id)
        if incident is None:
            not_found(f"incident {incident_id}")
        return {
            "incident": incident_json(incident),
            "members": [member_json(m) for m in reader.members(incident_id)],
            "timeline": [entry_json(e) for e in reader.timeline(incident_id)],
        }

    @app.post(INCIDENTS_PATH + "/{incident_id}/acknowledge", tags=["incidents"])
    def acknowledge(who: Operator, incident_id: int) -> dict[str, Any]:
        """Someone has it: escalation and repeats stop; receivers that were paged are told."""
        return {"incident": incident_json(perform(incident_id, lambda: engine.acknowledge(incident_id, who.name)))}

    @app.post(INCIDENTS_PATH + "/{incident_id}/resolve", tags=["incidents"])
    def resolve(who: Operator, incident_id: int, body: OptionalNote = None) -> dict[str, Any]:
        """Resolved by a person (receivers that were paged are told); alerts that fire again reopen it."""
        text = body.note if body is not None else ""
        return {"incident": incident_json(perform(incident_id, lambda: engine.resolve(incident_id, who.name, text)))}

    @app.post(INCIDENTS_PATH + "/{incident_id}/reopen", tags=["incidents"])
    def reopen(who: Operator, incident_id: int, body: OptionalNote = None) -> dict[str, Any]:
        text = body.note if body is not None else ""
        return {"incident": incident_json(perform(incident_id, lambda: engine.reopen(incident_id, who.name, text)))}

    @app.post(INCIDENTS_PATH + "/{incident_id}/assign", tags=["incidents"])
    def assign(who: Operator, incident_id: int, body: AssignBody) -> dict[str, Any]:
        change = lambda: engine.assign(incident_id, who.name, body.assignee.strip())  # noqa: E731
        return {"incident": incident_json(perform(incident_id, change))}

    @app.post(INCIDENTS_PATH + "/{incident_id}/notes", tags=["incidents"])
    def note(who: Operator, incident_id: int, body: NoteBody) -> dict[str, Any]:
        return {"incident": incident_json(perform(incident_id, lambda: engine.note(incident_id, who.name, body.text)))}
