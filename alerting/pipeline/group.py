"""Route and group: which routes take each alert, and which notification group (with which timers) it
belongs to. Grouping is also where the batch's alert states are stored (with their incident, role
and mute) and where an incident whose alerts have all resolved is marked resolved, so the notify
stage that follows reads the state it tells.

A group is one incident on one route, split further only by a route's ``group_by`` values. Its
timer (``next_flush_at``) follows Alertmanager's dispatcher: a new group waits ``group_wait`` (or
``critical_group_wait`` while it holds a critical alert: the first page of a critical incident
leaves at once), a group that has notified looks again ``group_interval`` after its last
notification when something changed, and otherwise ``repeat_interval`` after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace

from vigil.alerting.model import ENGINE, GroupState, TimelineEntry
from vigil.alerting.pipeline.base import Batch, Candidate, RouteMatch
from vigil.alerting.routing import Route

from vigil.events import Alert


def group_labels(route: RouteMatch, scope: Mapping[str, str]) -> dict[str, str]:
    if route.group_by is None:  # "...": every label
        return {k: v for k, v in scope.items() if k != "source"}
    return {k: scope.get(k, "") for k in route.group_by}


def group_key(incident_id: int, route: RouteMatch, labels: Mapping[str, str]) -> tuple[str, str]:
    """The group's key, and the suffix its dedup key gets when ``group_by`` splits the incident."""
    digest = hashlib.sha1(json.dumps(sorted(labels.items())).encode()).hexdigest()[:10] if labels else ""
    return f"{incident_id}|{route.route}|{digest}", digest


class RouteStage:
    name = "route"

    def __init__(self, tree: Route) -> None:
        self.tree = tree

    def run(self, batch: Batch) -> list[Candidate]:
        for c in batch.candidates:
            c.routes = [r.settings for r in self.tree.match(c.scope)]
            receivers = sorted({r.receiver for r in c.routes})
            c.note(self.name, "route", f"to {', '.join(receivers)}", routes=[r.route for r in c.routes])
        return batch.candidates


class Group:
    name = "group"

    def run(self, batch: Batch) -> list[Candidate]:
        self._store_alerts(batch)
        self._resolve_incidents(batch)
        self._update_groups(batch)
        return batch.candidates

    def _store_alerts(self, batch: Batch) -> None:
        latest: dict[str, tuple[Alert, dict[str, object]]] = {}
        for c in batch.candidates:
            if c.state is None:
                continue
            extra: dict[str, object] = {"incident_id": c.incident_id, "role": c.role, "source": c.source}
            if c.state.status == "firing":
                extra["muted"] = c.mute.describe() if c.mute is not None else None
            if c.generator_url is not None:
                extra["generator_url"] = c.generator_url
            latest[c.fingerprint] = (c.state, extra)
        known = {c.fingerprint: c.stored for c in batch.everything if c.stored is not None}
        versions = batch.store.save_alerts(list(latest.values()), known)
        batch.changed.extend((alert, versions[alert.fingerprint]) for alert, _ in latest.values())

    def _resolve_incidents(self, batch: Batch) -> None:
        """An open incident none of whose alerts fires any more is resolved (by the engine)."""
        resolving = {c.incident_id for c in batch.candidates if c.state is not None and c.state.status == "resolved"}
        resolving.discard(None)
        if not resolving:
            return
        counts = batch.store.firing_counts(i for i in resolving if i is not None)
        events = []
        for incident_id in sorted(i for i, n in counts.items() if n == 0):
            incident = batch.incidents.get(incident_id) or batch.store.incident(incident_id)
            if incident is None or not incident.is_open:
                continue
            values = {
                "state": "resolved",
                "resolved_at": batch.now,
                "resolved_by": ENGINE,
                "next_escalation_at": None,
                "updated_at": batch.now,
            }
            batch.store.update_incident(incident_id, values)
            batch.incidents[incident_id] = replace(incident, state="resolved", resolved_at=batch.now)
            events.append(TimelineEntry(incident_id, batch.now, "resolved", ENGINE, {"why": "every alert resolved"}))
            batch.touched_incidents.add(incident_id)
        batch.store.add_events(events)

    def _update_groups(self, batch: Batch) -> None:
        wanted: dict[str, tuple[Candidate, RouteMatch, dict[str, str], str]] = {}
        members: dict[str, list[Candidate]] = {}
        for c in batch.candidates:
            if c.incident_id is None or c.state is None or c.role == "symptom":
                continue  # a symptom tells no one on its own: its cause's group does
            # A silenced alert stays in its group (muted when the group is told), as in Alertmanager, so
            # it is told once its silence or maintenance window ends.
            for route in c.routes:
                labels = group_labels(route, c.scope)
                key, digest = group_key(c.incident_id, route, labels)
                wanted.setdefault(key, (c, route, labels, digest))
                members.setdefault(key, []).append(c)
                if c.alert.severity == "critical" and c.state.status == "firing":
                    wanted[key] = (c, route, labels, digest)  # the critical one sets the wait
        if not wanted:
            return
        existing = batch.store.groups(wanted)
        ids = {c.incident_id for c, *_ in wanted.values() if c.incident_id is not None}
        missing = [i for i in ids if i not in batch.incidents]
        batch.incidents.update(batch.store.incidents_by_id(missing) if missing else {})
        keys = {i: batch.incidents[i].key for i in ids if i in batch.incidents}
        changed = []
        for key, (c, route, labels, digest) in wanted.items():
            critical = c.alert.severity == "critical" and c.state is not None and c.state.status == "firing"
            group = existing.get(key)
            if group is None:
                if c.state is not None and c.state.status == "resolved":
                    continue  # nothing was ever told about it
                wait = route.critical_group_wait if critical else route.group_wait
                dedup = keys.get(c.incident_id or 0, "") + (f"/{digest}" if digest else "")
                note = f"new group: first notification in {wait:g}s"
                group = GroupState(
                    key,
                    c.incident_id or 0,
                    route.route,
                    route.receiver,
                    dedup,
                    labels,
                    batch.now + wait,
                    created_at=batch.now,
                )
            else:
                group = self._reschedule(group, route, critical, batch.now)
                note = f"group {key}: next look in {max(0.0, (group.next_flush_at or batch.now) - batch.now):g}s"
            for member in members[key]:
                member.note(self.name, "hold", note, group=key)
            changed.append(group)
        batch.store.save_groups(changed)

    @staticmethod
    def _reschedule(group: GroupState, route: RouteMatch, critical: bool, now: float) -> GroupState:
        if group.last_notified_at is None:  # still in its group_wait
            due = group.created_at + (route.critical_group_wait if critical else route.group_wait)
            current = group.next_flush_at if group.next_flush_at is not None else due
            return replace(group, next_flush_at=min(current, max(due, now)))
        due = max(now, group.last_notified_at + route.group_interval)
        current = group.next_flush_at if group.next_flush_at is not None else due
        return replace(group, next_flush_at=min(current, due))
