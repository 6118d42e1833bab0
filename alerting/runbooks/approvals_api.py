"""``/api/v1/approvals``: the pending remediation approvals, and an operator's decision on one.

- ``GET /api/v1/approvals``: ``{"approvals": [{id, subject, incident_id, run_id, action, params, why,
  requested_at, expires_at}]}``, the requests still waiting and unexpired;
- ``POST /api/v1/approvals/{id}/approve`` (or ``/deny``) with ``{"actor": "alice", "comment": "..."}``:
  200 ``{"id", "decision"}`` once the decision is committed (recorded with its actor in the approvals
  table, the audit log and the incident's timeline, and the runner woken); 409 when the request is
  not pending any more (decided, expired) or unknown.

The provider (``Approvals``) holds one store connection, used by one request at a time.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from vigil.alerting.runbooks.runner import Approvals

APPROVALS_PATH = "/api/v1/approvals"


class Decision(BaseModel):
    actor: Annotated[str, Field(min_length=1, max_length=200)]
    comment: Annotated[str, Field(max_length=2000)] = ""


def approvals_router(approvals: Approvals) -> APIRouter:
    router = APIRouter()
    lock = threading.Lock()

    @router.get(APPROVALS_PATH)
    def pending() -> dict[str, Any]:
        with lock:
            return {"approvals": [asdict(p) for p in approvals.pending()]}

    @router.post(APPROVALS_PATH + "/{approval_id}/{decision}")
    def decide(approval_id: int, decision: Literal["approve", "deny"], body: Decision) -> dict[str, Any]:
        with lock:
            decide_fn = approvals.approve if decision == "approve" else approvals.deny
            if not decide_fn(approval_id, body.actor, body.comment):
                raise HTTPException(status_code=409, detail=f"approval {approval_id} is not pending")
        return {"id": approval_id, "decision": "approved" if decision == "approve" else "denied"}

    return router
