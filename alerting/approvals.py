"""Pending approvals: the interface the API and the web UI list and decide through.

Remediation (issue 10) asks a person before a destructive step; whatever keeps those requests
provides :class:`ApprovalsProvider`: ``pending()`` lists what waits, ``approve``/``deny`` record the
decision with its actor (the caller's token name) and return False when there is nothing pending
with that id (it was decided, expired or never existed: the API answers 404). The service uses
:class:`NoApprovals` until remediation plugs its provider in (``AlertingService.approvals``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from vigil.clock import to_iso


class PendingApproval(Protocol):
    """One step waiting for a yes or no (remediation's ``PendingApproval`` has these fields)."""

    @property
    def id(self) -> int: ...
    @property
    def subject(self) -> str: ...  # what would happen, in words ("drain node-05")
    @property
    def incident_id(self) -> int | None: ...
    @property
    def run_id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def why(self) -> Sequence[str]: ...  # the guards that asked for a person
    @property
    def requested_at(self) -> float: ...
    @property
    def expires_at(self) -> float | None: ...


class ApprovalsProvider(Protocol):
    def pending(self) -> Sequence[PendingApproval]: ...

    def approve(self, approval_id: int, actor: str, comment: str = "") -> bool: ...

    def deny(self, approval_id: int, actor: str, comment: str = "") -> bool: ...


class NoApprovals:
    """Nothing ever waits: the provider until remediation is configured."""

    def pending(self) -> Sequence[PendingApproval]:
        return ()

    def approve(self, approval_id: int, actor: str, comment: str = "") -> bool:
        return False

    def deny(self, approval_id: int, actor: str, comment: str = "") -> bool:
        return False


class Serialized:
    """A provider used by one API request at a time (remediation's holds one store connection)."""

    def __init__(self, provider: ApprovalsProvider) -> None:
        self._provider = provider
        self._lock = threading.Lock()

    def pending(self) -> Sequence[PendingApproval]:
        with self._lock:
            return self._provider.pending()

    def approve(self, approval_id: int, actor: str, comment: str = "") -> bool:
        with self._lock:
            return self._provider.approve(approval_id, actor, comment)

    def deny(self, approval_id: int, actor: str, comment: str = "") -> bool:
        with self._lock:
            return self._provider.deny(approval_id, actor, comment)


def approval_json(item: PendingApproval) -> dict[str, Any]:
    return {
        "id": item.id,
        "subject": item.subject,
        "incident_id": item.incident_id,
        "run_id": item.run_id,
        "action": item.action,
        "params": dict(item.params),
        "why": list(item.why),
        "requested_at": to_iso(item.requested_at),
        "expires_at": to_iso(item.expires_at) if item.expires_at is not None else None,
    }
