"""The alerting store: alerts, incidents, their timeline, notification groups, the outbox and the
notification log, stage history, silences and approvals, API tokens, remediation runs and the audit log;
SQLite by default, PostgreSQL by URL.

The one interface is :class:`AlertStore` (one per thread, see ``base.py``) over a :class:`Database`
(one per process: the engine and the migrations). The tables are in ``schema.py``.
"""

from __future__ import annotations

from vigil.alerting.store.alerts import ALERT_COLUMNS, AlertRows, StoredAlert, alert_from_row
from vigil.alerting.store.database import Database
from vigil.alerting.store.incidents import IncidentRows
from vigil.alerting.store.outbox import Enqueue, OutboxRow, OutboxRows
from vigil.alerting.store.records import RecordRows
from vigil.alerting.store.remediation import AuditRow, RemediationRows, RunRow, StepRow
from vigil.alerting.store.tokens import TokenRows


class AlertStore(AlertRows, IncidentRows, OutboxRows, RecordRows, RemediationRows, TokenRows):
    """Every table's methods over one connection (``StoreBase``): one object per thread."""


__all__ = [
    "ALERT_COLUMNS",
    "AlertStore",
    "AuditRow",
    "Database",
    "Enqueue",
    "OutboxRow",
    "RunRow",
    "StepRow",
    "StoredAlert",
    "alert_from_row",
]
