"""``/api/v1/receivers`` (each notifier's outbox: pending, last delivery, last error, held until) and
``/api/v1/approvals`` (what remediation waits on a person for; see ``approvals.py``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI
from pydantic import BaseModel, ConfigDict, Field
from vigil.alerting.approvals import approval_json
from vigil.alerting.routes.context import ApiDeps, Operator, Viewer, not_found, ts

RECEIVERS_PATH = "/api/v1/receivers"
APPROVALS_PATH = "/api/v1/approvals"


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    comment: Annotated[str, Field(max_length=2000)] = ""


def receivers_status(deps: ApiDeps) -> list[dict[str, Any]]:
    """One entry per notifier an outbox worker sends through, with the routing receivers behind it.
    ``held_until`` is set while the worker waits out a retryable failure (its backoff)."""
    config = deps.engine.config
    integrations = config.integrations()
    used_by: dict[str, list[str]] = {name: [] for name in integrations}
    for receiver, names in config.receiver_integrations().items():
        for name in names:
            used_by.setdefault(name, []).append(receiver)
    figures = deps.reader.receiver_figures(list(integrations))
    held, now = deps.held(), deps.engine.clock.now()
    out = []
    for name, cfg in integrations.items():
        f = figures[name]
        until = held.get(name, 0.0)
        out.append(
            {
                "name": name,
                "type": cfg.type,
                "receivers": sorted(used_by.get(name, [])),
                "pending": f.pending,
                "oldest_pending_at": ts(f.oldest_pending_at),
                "next_attempt_at": ts(f.next_attempt_at),
                "last_delivered_at": ts(f.last_delivered_at),
                "last_error": f.last_error,
                "last_error_state": f.last_error_state,
                "held_until": ts(until) if until > now else None,
            }
        )
    return out


def decide(deps: ApiDeps, approval_id: int, approve: bool, actor: str, comment: str) -> None:
    provider = deps.approvals
    done = provider.approve(approval_id, actor, comment) if approve else provider.deny(approval_id, actor, comment)
    if not done:
        not_found(f"pending approval {approval_id}")


def add_receiver_routes(app: FastAPI, deps: ApiDeps) -> None:
    """On the app itself, not an APIRouter: the role check reads the app's own routes."""

    @app.get(RECEIVERS_PATH, tags=["receivers", "approvals"])
    def receivers(_: Viewer) -> dict[str, Any]:
        return {"receivers": receivers_status(deps)}

    @app.get(APPROVALS_PATH, tags=["receivers", "approvals"])
    def approvals(_: Viewer) -> dict[str, Any]:
        """Steps waiting for a person's yes or no, oldest first."""
        return {"approvals": [approval_json(a) for a in deps.approvals.pending()]}

    @app.post(APPROVALS_PATH + "/{approval_id}/approve", tags=["receivers", "approvals"])
    def approve(who: Operator, approval_id: int, body: Annotated[DecisionBody | None, Body()] = None) -> dict[str, Any]:
        decide(deps, approval_id, True, who.name, body.comment if body else "")
        return {"id": approval_id, "decision": "approved", "by": who.name}

    @app.post(APPROVALS_PATH + "/{approval_id}/deny", tags=["receivers", "approvals"])
    def deny(who: Operator, approval_id: int, body: Annotated[DecisionBody | None, Body()] = None) -> dict[str, Any]:
        decide(deps, approval_id, False, who.name, body.comment if body else "")
        return {"id": approval_id, "decision": "denied", "by": who.name}
