"""The web UI's routes: server-rendered pages over the same service calls and role checks as the API.

A form posts to a route that needs the operator role, then redirects back (303) with what was done
in the query string, so reloading a page never repeats an action. A refused action (the incident is
already acknowledged, a bad matcher) shows its page again with the reason.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response
from vigil.alerting.auth import COOKIE, same_origin
from vigil.alerting.incident_reader import IncidentFilter
from vigil.alerting.model import IncidentState
from vigil.alerting.routes.context import ApiDeps, Operator, Viewer
from vigil.alerting.routes.incidents import perform, position
from vigil.alerting.routes.receivers import decide, receivers_status
from vigil.alerting.routes.silences import SilenceBody, create_silence, expire_silence
from vigil.alerting.tokens import Principal
from vigil.alerting.ui.pages import Pages, local_path, set_login

from vigil.events import Severity

STATE_CHOICES: dict[str, tuple[IncidentState, ...]] = {
    "active": ("open", "acknowledged"),
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "merged": ("merged",),
    "all": (),
}
IncidentAction = Literal["acknowledge", "resolve", "reopen", "assign", "note"]
PAGE = 50
Text = Annotated[str, Form(max_length=10_000)]


def problem(exc: HTTPException | RequestValidationError) -> tuple[int, str]:
    """A refusal from the service layer, in words for the page."""
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    return 422, "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def add_ui_routes(app: FastAPI, deps: ApiDeps, pages: Pages) -> None:
    """The pages, on the app itself (the role check reads the app's own routes); not in the OpenAPI."""
    reader, engine = deps.reader, deps.engine
    _session_routes(app, deps, pages)

    @app.get("/", include_in_schema=False)
    def home(_: Viewer) -> Response:
        return see_other("/incidents")

    @app.get("/incidents", include_in_schema=False)
    def incidents(
        request: Request,
        who: Viewer,
        state: Literal["active", "open", "acknowledged", "resolved", "merged", "all"] = "active",
        min_priority: Annotated[float | None, Query(ge=0)] = None,
        domain: Annotated[str, Query(max_length=300)] = "",
        severity: Severity | Literal[""] = "",
        cursor: str | None = None,
    ) -> Response:
        where = IncidentFilter(STATE_CHOICES[state], min_priority, domain.strip() or None, severity or None)
        page = reader.incidents_page(where, PAGE, position(cursor))
        form = {"state": state, "min_priority": min_priority, "domain": domain, "severity": severity}
        return pages.render(request, "incidents.html", who, incidents=page.incidents, next=page.next, form=form)

    @app.get("/incidents/{incident_id}", include_in_schema=False)
    def incident(request: Request, who: Viewer, incident_id: int, done: str = "") -> Response:
        return _incident_page(request, who, incident_id, done=done)

    @app.post("/incidents/{incident_id}/{action}", include_in_schema=False)
    def incident_action(
        request: Request,
        who: Operator,
        incident_id: int,
        action: IncidentAction,
        note: Text = "",
        assignee: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        changes = {
            "acknowledge": lambda: engine.acknowledge(incident_id, who.name),
            "resolve": lambda: engine.resolve(incident_id, who.name, note.strip()),
            "reopen": lambda: engine.reopen(incident_id, who.name, note.strip()),
            "assign": lambda: engine.assign(incident_id, who.name, assignee.strip()),
            "note": lambda: engine.note(incident_id, who.name, note),
        }
        try:
            perform(incident_id, changes[action])
        except (HTTPException, RequestValidationError) as exc:
            status, why = problem(exc)
            return _incident_page(request, who, incident_id, status=status, error=f"Could not {action}: {why}")
        return see_other(f"/incidents/{incident_id}?done={action}")

    def _incident_page(
        request: Request, who: Principal, incident_id: int, status: int = 200, error: str = "", done: str = ""
    ) -> Response:
        found = reader.incident(incident_id)
        if found is None:
            message = f"There is no incident {incident_id}."
            return pages.render(request, "error.html", who, 404, title="Not found", message=message)
        context = {"members": reader.members(incident_id), "timeline": reader.timeline(incident_id)}
        return pages.render(request, "incident.html", who, status, incident=found, error=error, done=done, **context)

    _silence_routes(app, deps, pages)
    _other_routes(app, deps, pages)


def _session_routes(app: FastAPI, deps: ApiDeps, pages: Pages) -> None:
    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str | None = None) -> Response:
        return pages.login(request, 200, next_path=next)

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        token: Annotated[str, Form(max_length=500)],
        next: Annotated[str, Form(max_length=2000)] = "/incidents",
    ) -> Response:
        if not same_origin(request.scope):
            return pages.denied(request.scope, 403, "a login from another site is refused")
        principal = deps.book.principal(token.strip())
        if principal is None:
            return pages.login(request, 401, "That token is unknown or revoked.", next)
        if principal.role == "intake":
            return pages.login(request, 403, "An intake token can only post alerts: log in with another.", next)
        response = see_other(local_path(next))
        set_login(response, token.strip(), request.url.scheme == "https")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = see_other("/login")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response


def _silence_routes(app: FastAPI, deps: ApiDeps, pages: Pages) -> None:
    def show(request: Request, who: Principal, status: int = 200, **context: object) -> Response:
        now = deps.engine.clock.now()
        every = deps.reader.silences()
        running = [s for s in every if s.state(now) != "expired"]
        expired = [s for s in every if s.state(now) == "expired"]
        form = context.pop("form", {"matchers": "", "duration": "2h", "comment": ""})
        return pages.render(
            request, "silences.html", who, status, running=running, expired=expired, now=now, form=form, **context
        )

    @app.get("/silences", include_in_schema=False)
    def silences(request: Request, who: Viewer, done: str = "") -> Response:
        return show(request, who, done=done)

    @app.post("/silences", include_in_schema=False)
    def create(
        request: Request,
        who: Operator,
        matchers: Text,
        comment: Annotated[str, Form(max_length=2000)],
        duration: Annotated[str, Form(max_length=20)] = "2h",
    ) -> Response:
        form = {"matchers": matchers, "duration": duration, "comment": comment}
        lines = [line.strip() for line in matchers.splitlines() if line.strip()]
        try:
            body = SilenceBody(matchers=lines, comment=comment, duration=duration)
            made = create_silence(deps, body, who.name)
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'silence'}: {e['msg']}" for e in exc.errors())
            return show(request, who, 422, form=form, error=errors)
        except (HTTPException, RequestValidationError) as exc:
            return show(request, who, problem(exc)[0], form=form, error=problem(exc)[1])
        return see_other(f"/silences?done=created#silence-{made.id}")

    @app.post("/silences/{silence_id}/expire", include_in_schema=False)
    def expire(request: Request, who: Operator, silence_id: str) -> Response:
        try:
            expire_silence(deps, silence_id, who.name)
        except HTTPException as exc:
            return show(request, who, exc.status_code, error=f"Could not expire: {exc.detail}")
        return see_other("/silences?done=expired")


def _other_routes(app: FastAPI, deps: ApiDeps, pages: Pages) -> None:
    @app.get("/approvals", include_in_schema=False)
    def approvals(request: Request, who: Viewer, done: str = "") -> Response:
        return pages.render(request, "approvals.html", who, pending=deps.approvals.pending(), done=done)

    @app.post("/approvals/{approval_id}/{decision}", include_in_schema=False)
    def approval_decision(
        request: Request,
        who: Operator,
        approval_id: int,
        decision: Literal["approve", "deny"],
        comment: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        try:
            decide(deps, approval_id, decision == "approve", who.name, comment)
        except HTTPException as exc:
            pending = deps.approvals.pending()
            error = f"Could not {decision}: {exc.detail}"
            return pages.render(request, "approvals.html", who, exc.status_code, pending=pending, error=error)
        return see_other("/approvals?done=" + ("approved" if decision == "approve" else "denied"))

    @app.get("/receivers", include_in_schema=False)
    def receivers(request: Request, who: Viewer) -> Response:
        return pages.render(request, "receivers.html", who, receivers=receivers_status(deps))
