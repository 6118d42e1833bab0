"""Incidents, their members and timeline, and the notification groups that tell them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from vigil.alerting.model import OPEN_STATES, Domain, GroupState, Incident, IncidentState, Member, TimelineEntry
from vigil.alerting.store.base import StoreBase, dumps
from vigil.alerting.store.schema import incident_events, incident_members, incidents, notification_groups

from vigil.events import Severity


def incident_from_row(row: Any) -> Incident:
    return Incident(
        id=row.id,
        key=row.key,
        domain=Domain.parse(row.domain),
        state=cast(IncidentState, row.state),
        severity=cast(Severity, row.severity),
        priority=row.priority,
        title=row.title,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        assignee=row.assignee,
        escalation_policy=row.escalation_policy,
        escalation_level=row.escalation_level,
        next_escalation_at=row.next_escalation_at,
        merged_into=row.merged_into,
        detail=json.loads(row.detail),
    )


def _group_from_row(row: Any) -> GroupState:
    return GroupState(
        key=row.key,
        incident_id=row.incident_id,
        route=row.route,
        receiver=row.receiver,
        dedup_key=row.dedup_key,
        group_labels=json.loads(row.group_labels),
        next_flush_at=row.next_flush_at,
        last_notified_at=row.last_notified_at,
        notified_firing=tuple(json.loads(row.notified_firing)),
        notified_resolved=tuple(json.loads(row.notified_resolved)),
        created_at=row.created_at,
    )


def _group_values(group: GroupState) -> dict[str, Any]:
    return {
        "key": group.key,
        "incident_id": group.incident_id,
        "route": group.route,
        "receiver": group.receiver,
        "dedup_key": group.dedup_key,
        "group_labels": dumps(dict(group.group_labels)),
        "next_flush_at": group.next_flush_at,
        "last_notified_at": group.last_notified_at,
        "notified_firing": dumps(sorted(group.notified_firing)),
        "notified_resolved": dumps(sorted(group.notified_resolved)),
        "created_at": group.created_at,
    }


class IncidentRows(StoreBase):
    # ------------------------------------------------------------------ incidents

    def incident(self, incident_id: int) -> Incident | None:
        rows = self._read(select(incidents).where(incidents.c.id == incident_id))
        return incident_from_row(rows[0]) if rows else None

    def incident_by_key(self, key: str) -> Incident | None:
        rows = self._read(select(incidents).where(incidents.c.key == key))
        return incident_from_row(rows[0]) if rows else None

    def open_incidents(
        self,
        domains: Iterable[str] | None = None,
        hosts: Iterable[str] | None = None,
        opened_after: float | None = None,
    ) -> list[Incident]:
        """Incidents still open or acknowledged (what a new alert may join): all of them, or those about
        these domain keys, or those about GPUs, disks or nodes of these hosts; opened after a time."""
        query = select(incidents).where(incidents.c.state.in_(OPEN_STATES)).order_by(incidents.c.id)
        if opened_after is not None:
            query = query.where(incidents.c.opened_at >= opened_after)
        if domains is None and hosts is None:
            return [incident_from_row(r) for r in self._read(query)]
        column, values = (incidents.c.domain, domains) if domains is not None else (incidents.c.host, hosts)
        wanted = sorted(set(values or ()))
        out: list[Incident] = []
        for start in range(0, len(wanted), 500):
            rows = self._read(query.where(column.in_(wanted[start : start + 500])))
            out += [incident_from_row(r) for r in rows]
        return out

    def open_priorities(self) -> list[tuple[str, float]]:
        """(domain ``kind:id``, GPU-hours at risk) of every open or acknowledged incident, for the
        scrape-time gauges (``vigil_incidents_open``): one narrow indexed read, no JSON decoded."""
        stmt = select(incidents.c.domain, incidents.c.priority).where(incidents.c.state.in_(OPEN_STATES))
        return [(str(domain), float(priority)) for domain, priority in self._read(stmt)]

    def incidents_by_id(self, ids: Iterable[int]) -> dict[int, Incident]:
        wanted = sorted(set(ids))
        out: dict[int, Incident] = {}
        for start in range(0, len(wanted), 500):
            rows = self._read(select(incidents).where(incidents.c.id.in_(wanted[start : start + 500])))
            out.update((r.id, incident_from_row(r)) for r in rows)
        return out

    def absorbed_keys(self, incident_id: int) -> list[str]:
        """The keys of the incidents merged into this one, and into those (a burst that grew twice)."""
        keys: list[str] = []
        frontier = [incident_id]
        while frontier and len(keys) < 1000:
            rows = self._read(select(incidents.c.id, incidents.c.key).where(incidents.c.merged_into.in_(frontier)))
            frontier = [r.id for r in rows]
            keys += [r.key for r in rows]
        return keys

    def incidents(self, state: str | None = None, limit: int = 100) -> list[Incident]:
        """Most urgent first: open before resolved, then by priority (GPU-hours at risk), newest first."""
        query = select(incidents).order_by(incidents.c.priority.desc(), incidents.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(incidents.c.state == state)
        return [incident_from_row(r) for r in self._read(query)]

    def create_incident(self, values: Mapping[str, Any]) -> int:
        """Insert an incident (``key``, ``domain``, ``state``, ``severity``, ``title``, times...); its id."""
        row = {**values}
        if isinstance(row.get("domain"), Domain):
            domain = row["domain"]
            row["domain"] = domain.key
            row["host"] = domain.id.split("/")[0] if domain.kind in ("gpu", "disk", "node") else None
        row["detail"] = dumps(dict(row.get("detail") or {}))
        self._changed()
        return self._insert(insert(incidents), row)

    def update_incidents(self, updates: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """Many incidents' updates: those that set the same columns go in one executemany."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for incident_id, values in updates:
            row = {**values}
            if "detail" in row:
                row["detail"] = dumps(dict(row["detail"] or {}))
            by_columns.setdefault(tuple(sorted(row)), []).append({**row, "b_id": incident_id})
        with self.transaction():
            for columns, rows in by_columns.items():
                stmt = (
                    update(incidents)
                    .where(incidents.c.id == bindparam("b_id"))
                    .values({c: bindparam(c) for c in columns})
                )
                self._write(stmt, rows)
            if updates:
                self._changed()

    def update_incident(self, incident_id: int, values: Mapping[str, Any]) -> None:
        row = {**values}
        if "detail" in row:
            row["detail"] = dumps(dict(row["detail"] or {}))
        with self.transaction():
            self._write(update(incidents).where(incidents.c.id == incident_id).values(row))
            self._changed()

    def escalations_due(self, now: float) -> list[Incident]:
        query = select(incidents).where(
            incidents.c.state == "open",
            incidents.c.next_escalation_at.is_not(None),
            incidents.c.next_escalation_at <= now,
        )
        return [incident_from_row(r) for r in self._read(query)]

    # ------------------------------------------------------------------ members and timeline

    def add_members(self, members: Sequence[Member]) -> None:
        if members:
            rows = [
                {"incident_id": m.incident_id, "fingerprint": m.fingerprint, "joined_at": m.joined_at, "role": m.role}
                for m in members
            ]
            self._write(insert(incident_members), rows)

    def move_members(self, source: int, target: int, now: float) -> list[str]:
        """Every member of ``source`` joins ``target`` (a merge); returns their fingerprints."""
        with self.transaction():
            rows = self._read(select(incident_members).where(incident_members.c.incident_id == source))
            have = {
                r.fingerprint
                for r in self._read(
                    select(incident_members.c.fingerprint).where(incident_members.c.incident_id == target)
                )
            }
            self.add_members([Member(target, r.fingerprint, now, r.role) for r in rows if r.fingerprint not in have])
            return [r.fingerprint for r in rows]

    def memberships(self, fps: Iterable[str]) -> set[tuple[int, str]]:
        """(incident id, fingerprint) of every incident these alerts ever belonged to."""
        wanted = sorted(set(fps))
        out: set[tuple[int, str]] = set()
        for start in range(0, len(wanted), 500):
            cols = (incident_members.c.incident_id, incident_members.c.fingerprint)
            query = select(*cols).where(incident_members.c.fingerprint.in_(wanted[start : start + 500]))
            out.update((r.incident_id, r.fingerprint) for r in self._read(query))
        return out

    def members(self, incident_id: int) -> list[Member]:
        query = select(incident_members).where(incident_members.c.incident_id == incident_id)
        rows = self._read(query.order_by(incident_members.c.joined_at))
        return [Member(r.incident_id, r.fingerprint, r.joined_at, r.role) for r in rows]

    def add_events(self, entries: Iterable[TimelineEntry]) -> None:
        rows = [
            {
                "incident_id": e.incident_id,
                "at": e.at,
                "kind": e.kind,
                "actor": e.actor,
                "detail": dumps(dict(e.detail)),
            }
            for e in entries
        ]
        if rows:
            self._write(insert(incident_events), rows)
            self._changed()

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        query = select(incident_events).where(incident_events.c.incident_id == incident_id)
        rows = self._read(query.order_by(incident_events.c.id))
        return [TimelineEntry(r.incident_id, r.at, r.kind, r.actor, json.loads(r.detail), r.id) for r in rows]

    # ------------------------------------------------------------------ notification groups

    def groups(self, keys: Iterable[str]) -> dict[str, GroupState]:
        wanted = sorted(set(keys))
        out: dict[str, GroupState] = {}
        for start in range(0, len(wanted), 500):
            query = select(notification_groups).where(notification_groups.c.key.in_(wanted[start : start + 500]))
            out.update((r.key, _group_from_row(r)) for r in self._read(query))
        return out

    def groups_of(self, incident_id: int) -> list[GroupState]:
        query = select(notification_groups).where(notification_groups.c.incident_id == incident_id)
        return [_group_from_row(r) for r in self._read(query.order_by(notification_groups.c.key))]

    def due_groups(self, now: float, limit: int = 1000) -> list[GroupState]:
        query = (
            select(notification_groups)
            .where(and_(notification_groups.c.next_flush_at.is_not(None), notification_groups.c.next_flush_at <= now))
            .order_by(notification_groups.c.next_flush_at)
            .limit(limit)
        )
        return [_group_from_row(r) for r in self._read(query)]

    def next_flush_at(self) -> float | None:
        value = self._scalar(select(func.min(notification_groups.c.next_flush_at)))
        return float(value) if value is not None else None

    def save_groups(self, groups: Sequence[GroupState]) -> None:
        """Insert or replace groups (by key) in the current transaction."""
        if not groups:
            return
        with self.transaction():
            keys = [g.key for g in groups]
            for start in range(0, len(keys), 500):
                self._write(delete(notification_groups).where(notification_groups.c.key.in_(keys[start : start + 500])))
            self._write(insert(notification_groups), [_group_values(g) for g in groups])

    def drop_groups(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 500):
            self._write(
                delete(notification_groups).where(notification_groups.c.key.in_(list(keys[start : start + 500])))
            )
