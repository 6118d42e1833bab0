"""Alert rows, their publication marks and their stage history.

``version``/``published_version`` on an alert say whether its latest state reached the alerts topic,
so a crash between the database commit and the publish is repaired on restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import and_, bindparam, func, insert, select, update
from vigil.alerting.model import StageDecision
from vigil.alerting.store.base import StoreBase, dumps
from vigil.alerting.store.schema import alert_history, alerts

from vigil.events import Alert, Decision, Severity

ALERT_COLUMNS = (
    alerts.c.fingerprint,
    alerts.c.status,
    alerts.c.labels,
    alerts.c.annotations,
    alerts.c.severity,
    alerts.c.starts_at,
    alerts.c.ends_at,
    alerts.c.updated_at,
    alerts.c.recommended_action,
)
STORED_COLUMNS = (
    *ALERT_COLUMNS,
    alerts.c.version,
    alerts.c.incident_id,
    alerts.c.role,
    alerts.c.muted,
    alerts.c.source,
    alerts.c.generator_url,
)
_CHUNK = 500  # fingerprints per IN (...) query: well under every database's parameter limit


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as the engine keeps it: the event, and where the engine put it."""

    alert: Alert
    version: int
    incident_id: int | None
    role: str | None
    muted: str | None
    source: str
    generator_url: str | None = None


def alert_from_row(row: Any) -> Alert:
    return Alert(
        fingerprint=row.fingerprint,
        status=cast(Decision, row.status),
        labels=json.loads(row.labels),
        annotations=json.loads(row.annotations),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        severity=cast(Severity, row.severity),
        recommended_action=row.recommended_action,
        updated_at=row.updated_at,
    )


def stored_from_row(row: Any) -> StoredAlert:
    return StoredAlert(
        alert_from_row(row), row.version, row.incident_id, row.role, row.muted, row.source, row.generator_url
    )


def alert_values(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "labels": dumps(dict(alert.labels)),
        "annotations": dumps(dict(alert.annotations)),
        "severity": alert.severity,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "updated_at": alert.updated_at,
        "recommended_action": alert.recommended_action,
        "alertname": str(alert.labels.get("alertname", "")),
    }


class AlertRows(StoreBase):
    def get(self, fp: str) -> Alert | None:
        rows = self._read(select(*ALERT_COLUMNS).where(alerts.c.fingerprint == fp))
        return alert_from_row(rows[0]) if rows else None

    def stored(self, fps: Iterable[str]) -> dict[str, StoredAlert]:
        """The stored state of each fingerprint that has one (a batch's worth, in few queries)."""
        wanted = sorted(set(fps))
        out: dict[str, StoredAlert] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            for row in self._read(select(*STORED_COLUMNS).where(alerts.c.fingerprint.in_(chunk))):
                out[row.fingerprint] = stored_from_row(row)
        return out

    def firing(self, alertnames: Sequence[str] | None = None) -> list[StoredAlert]:
        """Firing alerts (with one of these names, if given: an indexed lookup): inhibition's sources."""
        query = select(*STORED_COLUMNS).where(alerts.c.status == "firing")
        if alertnames is not None:
            query = query.where(alerts.c.alertname.in_(sorted(set(alertnames))))
        return [stored_from_row(r) for r in self._read(query)]

    def alerts(self, status: str | None = None, limit: int = 1000) -> list[Alert]:
        query = select(*ALERT_COLUMNS).order_by(alerts.c.updated_at.desc()).limit(limit)
        if status is not None:
            query = query.where(alerts.c.status == status)
        return [alert_from_row(r) for r in self._read(query)]

    def of_incident(self, incident_id: int) -> list[StoredAlert]:
        rows = self._read(
            select(*STORED_COLUMNS).where(alerts.c.incident_id == incident_id).order_by(alerts.c.starts_at)
        )
        return [stored_from_row(r) for r in rows]

    def of_incidents(self, incident_ids: Iterable[int]) -> dict[int, list[StoredAlert]]:
        """The alerts of each incident (one query per 500 incidents), oldest first."""
        wanted = sorted(set(incident_ids))
        out: dict[int, list[StoredAlert]] = {i: [] for i in wanted}
        for start in range(0, len(wanted), _CHUNK):
            query = select(*STORED_COLUMNS).where(alerts.c.incident_id.in_(wanted[start : start + _CHUNK]))
            for row in self._read(query.order_by(alerts.c.starts_at)):
                out[row.incident_id].append(stored_from_row(row))
        return out

    def firing_counts(self, incident_ids: Iterable[int]) -> dict[int, int]:
        wanted = sorted(set(incident_ids))
        out = dict.fromkeys(wanted, 0)
        for start in range(0, len(wanted), _CHUNK):
            query = (
                select(alerts.c.incident_id, func.count())
                .where(alerts.c.incident_id.in_(wanted[start : start + _CHUNK]), alerts.c.status == "firing")
                .group_by(alerts.c.incident_id)
            )
            out.update((int(r[0]), int(r[1])) for r in self._read(query))
        return out

    def upsert(self, alert: Alert) -> int:
        """Store one alert's new state; returns its version (bumped on every change)."""
        return self.save_alerts([(alert, {})])[alert.fingerprint]

    def save_alerts(
        self, changes: Sequence[tuple[Alert, Mapping[str, Any]]], known: Mapping[str, StoredAlert] | None = None
    ) -> dict[str, int]:
        """Insert or update many alerts in the current transaction; returns each one's new version.

        ``extra`` sets engine columns (``incident_id``, ``role``, ``muted``, ``source``,
        ``generator_url``); those it does not name keep their stored value (defaults for a new alert)."""
        if not changes:
            return {}
        with self.transaction():
            if known is None:  # the caller may pass what it already read in this transaction
                known = self.stored(a.fingerprint for a, _ in changes)
            fresh: list[dict[str, Any]] = []
            old: list[dict[str, Any]] = []
            for alert, extra in changes:
                current = known.get(alert.fingerprint)
                engine = _engine_columns(current) | dict(extra)
                if current is None:
                    fresh.append({**alert_values(alert), **engine, "version": 1})
                else:
                    old.append(
                        {**alert_values(alert), **engine, "b_fp": alert.fingerprint, "version": current.version + 1}
                    )
            if fresh:
                self._write(insert(alerts), fresh)
            if old:
                columns: dict[str, Any] = {k: bindparam(k) for k in old[0] if k not in ("fingerprint", "b_fp")}
                self._write(update(alerts).where(alerts.c.fingerprint == bindparam("b_fp")).values(columns), old)
            self._changed()
        return {a.fingerprint: (known[a.fingerprint].version + 1 if a.fingerprint in known else 1) for a, _ in changes}

    def set_engine_columns(self, fps: Iterable[str], values: Mapping[str, Any]) -> None:
        """Move alerts to another incident (a merge) or change their mute, without a new version."""
        wanted = sorted(set(fps))
        for start in range(0, len(wanted), _CHUNK):
            self._write(update(alerts).where(alerts.c.fingerprint.in_(wanted[start : start + _CHUNK])).values(values))
        self._changed()

    def count(self, status: str) -> int:
        return int(self._scalar(select(func.count()).select_from(alerts).where(alerts.c.status == status)) or 0)

    def unpublished(self) -> list[tuple[Alert, int]]:
        rows = self._read(
            select(*ALERT_COLUMNS, alerts.c.version)
            .where(alerts.c.published_version < alerts.c.version)
            .order_by(alerts.c.updated_at, alerts.c.fingerprint)
        )
        return [(alert_from_row(r), int(r.version)) for r in rows]

    def mark_published(self, versions: Mapping[str, int]) -> None:
        if not versions:
            return
        stmt = (
            update(alerts)
            .where(and_(alerts.c.fingerprint == bindparam("b_fp"), alerts.c.published_version < bindparam("v")))
            .values(published_version=bindparam("v"))
        )
        self._write(stmt, [{"b_fp": fp, "v": v} for fp, v in versions.items()])

    # ------------------------------------------------------------------ stage history

    def record_history(self, entries: Sequence[tuple[str, float, str, int | None, Sequence[Any]]]) -> None:
        """One row per alert per pass: (fingerprint, at, status, incident id, the stages' decisions as
        ``StageDecision`` or ``(stage, decision, reason, detail)``)."""
        if not entries:
            return
        rows = [
            {"fingerprint": fp, "at": at, "status": st, "incident_id": inc, "trail": _TRAIL([_step(d) for d in t])}
            for fp, at, st, inc, t in entries
        ]
        self._write(insert(alert_history), rows)


_TRAIL = json.JSONEncoder(separators=(",", ":"), default=str).encode  # one row per alert pass: unsorted


def _step(decision: Any) -> dict[str, Any]:
    if isinstance(decision, StageDecision):
        return decision.to_json()
    stage, verdict, reason, detail = decision
    out = {"stage": stage, "decision": verdict, "reason": reason}
    if detail:
        out["detail"] = detail
    return out


def _engine_columns(current: StoredAlert | None) -> dict[str, Any]:
    if current is None:
        return {"incident_id": None, "role": None, "muted": None, "source": "detection", "generator_url": None}
    return {
        "incident_id": current.incident_id,
        "role": current.role,
        "muted": current.muted,
        "source": current.source,
        "generator_url": current.generator_url,
    }
