"""Notify: tell each due notification group's receiver about its incident, and escalate what nobody
acknowledged. Runs at the end of every batch (a critical incident's first page leaves in the
transaction that opened it) and on the engine's timer (``group_wait``, ``group_interval``,
``repeat_interval``, escalation timeouts).

Each notification is one outbox row per integration of the receiver, written in the transaction
that decided it; the receivers' outbox workers (``outbox.py``) deliver them with one retry stage.
The notification log records every decision with its reason: ``first``, ``new_alerts_in_group``,
``repeat_interval_elapsed``, ``resolved``, ``merged``, ``escalated``, or ``no_change`` (skipped).
Silences and maintenance windows are checked again here, at the moment of telling, so one made
after an alert fired stops its repeats and escalations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from vigil.alerting.escalation import EscalationPolicy, Rotation
from vigil.alerting.maintenance import MaintenanceMuter, TimeInterval, in_intervals
from vigil.alerting.model import ENGINE, GroupState, Incident, TimelineEntry
from vigil.alerting.notifiers.base import Action
from vigil.alerting.pages import page
from vigil.alerting.pipeline.base import Batch, Candidate, Muter
from vigil.alerting.pipeline.group import group_labels
from vigil.alerting.pipeline.intake import scope_of
from vigil.alerting.pipeline.mute import UnderRemediation
from vigil.alerting.routing import Route
from vigil.alerting.silences import Silencer
from vigil.alerting.store import AlertStore, Enqueue, StoredAlert
from vigil.alerting.topology import Topology


@dataclass(frozen=True, slots=True)
class Receivers:
    integrations: Mapping[str, Sequence[str]]  # receiver -> integration (outbox notifier) names
    send_resolved: Mapping[str, bool]  # integration -> whether it wants resolves


@dataclass(frozen=True, slots=True)
class Telling:
    """How notifications are addressed and what escalates."""

    receivers: Receivers
    policies: Mapping[str, EscalationPolicy]
    rotations: Mapping[str, Rotation]
    base_url: str | None = None


class Notify:
    name = "notify"

    def __init__(
        self,
        tree: Route,
        telling: Telling,
        maintenance: MaintenanceMuter,
        topology: Topology,
        intervals: Mapping[str, Sequence[TimeInterval]],
    ) -> None:
        self._intervals = intervals
        self._routes = {r.id: r for r in tree.walk()}
        self._tree = tree
        self._telling = telling
        self._maintenance = maintenance
        self._topology = topology

    def run(self, batch: Batch) -> list[Candidate]:
        told = self.flush(batch.store, batch.now)
        for c in batch.candidates:
            if c.incident_id in told:
                c.note(self.name, "notify", told[c.incident_id], incident=c.incident_id)
            elif c.incident_id is not None:
                c.note(self.name, "hold", "nothing to tell now (group timer, mute, or already told)")
        return batch.candidates

    def flush(self, store: AlertStore, now: float) -> dict[int, str]:
        """Every group whose time has come, then every escalation; returns incident -> reason told.
        Reads in a few queries for all due groups, and writes what they decide in a few more."""
        told: dict[int, str] = {}
        due = store.due_groups(now)
        escalations = store.escalations_due(now)
        if not due and not escalations:
            return told
        out = Outgoing()
        robot = UnderRemediation(store.nodes_in_remediation())
        muters = (Silencer(store.silences(active_at=now)), self._maintenance, robot)
        ids = {g.incident_id for g in due} | {i.id for i in escalations}
        incidents = store.incidents_by_id(ids)
        alerts = store.of_incidents(ids)
        for group in due:
            reason = self._flush_group(out, group, incidents.get(group.incident_id), alerts, now, muters)
            if reason is not None:
                told[group.incident_id] = reason
        for incident in escalations:
            if self._escalate(out, incident, alerts.get(incident.id, []), now):
                told[incident.id] = "escalated"
        out.write(store, now)
        return told

    # ------------------------------------------------------------------ groups

    def _flush_group(
        self,
        out: Outgoing,
        group: GroupState,
        incident: Incident | None,
        alerts: Mapping[int, Sequence[StoredAlert]],
        now: float,
        muters: Sequence[Muter],
    ) -> str | None:
        route = self._routes.get(group.route)
        if incident is None or route is None:
            out.drops.append(group.key)  # its incident or route is gone (a config change)
            return None
        if self._route_quiet(route, now):  # its mute_time_intervals hold (or its active ones do not)
            out.groups.append(replace(group, next_flush_at=now + route.settings.group_interval))
            return None
        members = self._members(alerts.get(incident.id, ()), group)
        told = bool(group.notified_firing)
        if incident.state in ("resolved", "merged"):
            if told:
                reason = "merged" if incident.state == "merged" else "resolved"
                out.send(self._telling, incident, group.receiver, group.dedup_key, members, reason, "resolve", now)
            out.drops.append(group.key)
            return "resolved" if told else None
        firing = [s for s in members if s.alert.status == "firing" and not self._muted(s, muters, now)]
        told_now = self._reason(incident, group, firing, now, route)
        if told_now is None:
            if not firing and not any(s.alert.status == "firing" for s in members):
                if told:
                    out.send(
                        self._telling, incident, group.receiver, group.dedup_key, members, "resolved", "resolve", now
                    )
                out.drops.append(group.key)
                return "resolved" if told else None
            out.logs.append((group.dedup_key, group.receiver, "no_change", "skipped", incident.id))
            if firing:  # told already: look again when a repeat could be due (never in the past)
                repeat = (group.last_notified_at or now) + route.settings.repeat_interval
                later = repeat if repeat > now else now + route.settings.repeat_interval
            else:  # only muted alerts fire: look again in case a silence or window ends
                later = now + route.settings.group_interval
            out.groups.append(replace(group, next_flush_at=later))
            return None
        out.send(self._telling, incident, group.receiver, group.dedup_key, firing, told_now, "trigger", now)
        fps = tuple(sorted(told_as(s) for s in firing))
        repeat_at = now + route.settings.repeat_interval
        out.groups.append(replace(group, last_notified_at=now, notified_firing=fps, next_flush_at=repeat_at))
        if told_now == "first":
            self._start_escalation(out, incident, route, now)
        return told_now

    def _route_quiet(self, route: Route, now: float) -> bool:
        if route.mute_time_intervals and in_intervals(route.mute_time_intervals, self._intervals, now):
            return True
        return bool(route.active_time_intervals) and not in_intervals(route.active_time_intervals, self._intervals, now)

    @staticmethod
    def _reason(
        incident: Incident, group: GroupState, firing: Sequence[StoredAlert], now: float, route: Route
    ) -> str | None:
        if not firing:
            return None
        if not group.notified_firing:
            return "first"
        new = {told_as(s) for s in firing} - set(group.notified_firing)
        if new:
            # Only alerts told before, now more severe (a forecast under an hour): the same episode, escalated.
            told = {k.partition(":")[0] for k in group.notified_firing}
            return "escalated" if all(k.partition(":")[0] in told for k in new) else "new_alerts_in_group"
        last = group.last_notified_at or now
        if incident.state == "open" and now - last >= route.settings.repeat_interval:
            return "repeat_interval_elapsed"  # an acknowledged incident is not paged again
        return None

    def _members(self, alerts: Sequence[StoredAlert], group: GroupState) -> list[StoredAlert]:
        """The incident's alerts that this group tells: routed to its route with its group labels."""
        out = []
        for stored in alerts:
            if stored.role == "symptom":
                continue
            scope = scope_of(stored.alert.labels, stored.source, self._topology)
            for route in self._tree.match(scope):
                if route.id == group.route and group_labels(route.settings, scope) == dict(group.group_labels):
                    out.append(stored)
                    break
        return out

    def _muted(self, stored: StoredAlert, muters: Sequence[Muter], now: float) -> bool:
        if stored.muted is not None and stored.muted.startswith("inhibited"):
            return True
        scope = scope_of(stored.alert.labels, stored.source, self._topology)
        return any(m.mutes(stored.alert.fingerprint, scope, now) is not None for m in muters)

    # ------------------------------------------------------------------ escalation

    def _start_escalation(self, out: Outgoing, incident: Incident, route: Route, now: float) -> None:
        policy = self._telling.policies.get(route.settings.escalation or "")
        if policy is None or incident.escalation_policy is not None:
            return
        values: dict[str, object] = {
            "escalation_policy": policy.name,
            "escalation_level": 0,
            "next_escalation_at": now + policy.levels[0].after,
        }
        if policy.assign and not incident.assignee:
            values["assignee"] = self._telling.rotations[policy.assign].on_call(now)
        out.incidents.append((incident.id, values))

    def _escalate(self, out: Outgoing, incident: Incident, alerts: Sequence[StoredAlert], now: float) -> bool:
        policy = self._telling.policies.get(incident.escalation_policy or "")
        level_no = incident.escalation_level + 1
        level = policy.level(level_no) if policy is not None else None
        if policy is None or level is None:
            out.incidents.append((incident.id, {"next_escalation_at": None}))
            return False
        firing = [s for s in alerts if s.alert.status == "firing" and s.role != "symptom"]
        for receiver in level.receivers:
            out.send(self._telling, incident, receiver, incident.key, firing, "escalated", "trigger", now)
        following = policy.level(level_no + 1)
        values: dict[str, object] = {
            "escalation_level": level_no,
            "next_escalation_at": now + following.after if following is not None else None,
        }
        if level.assign:
            values["assignee"] = self._telling.rotations[level.assign].on_call(now)
        out.incidents.append((incident.id, values))
        detail = {"level": level_no, "receivers": list(level.receivers), "assignee": values.get("assignee")}
        out.events.append(TimelineEntry(incident.id, now, "escalated", ENGINE, detail))
        return True


def told_as(stored: StoredAlert) -> str:
    """How a group remembers a firing alert it told: fingerprint and severity, so a severity raised
    within the episode is news (``escalated``) and the same state told again is not."""
    return f"{stored.alert.fingerprint}:{stored.alert.severity}"


@dataclass
class Outgoing:
    """What a flush decided, written in a few statements at its end (``write``)."""

    items: list[Enqueue] = field(default_factory=list)
    logs: list[tuple[str, str, str, str, int | None]] = field(default_factory=list)
    events: list[TimelineEntry] = field(default_factory=list)
    groups: list[GroupState] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)
    incidents: list[tuple[int, dict[str, object]]] = field(default_factory=list)

    def send(
        self,
        telling: Telling,
        incident: Incident,
        receiver: str,
        dedup_key: str,
        alerts: Sequence[StoredAlert],
        reason: str,
        action: Action,
        now: float,
    ) -> None:
        """One notification per integration of ``receiver`` (a resolve only to those that want it), and a
        timeline entry saying so."""
        shown = [s.alert for s in alerts]
        sent = 0
        for integration in telling.receivers.integrations.get(receiver, ()):
            if action == "resolve" and not telling.receivers.send_resolved.get(integration, True):
                continue
            note = page(incident, shown, reason, action, dedup_key, integration, now, telling.base_url)
            self.items.append(Enqueue(dedup_key, integration, reason, note.to_json(), incident.id))
            sent += 1
        detail = {"receiver": receiver, "reason": reason, "action": action, "integrations": sent, "key": dedup_key}
        self.events.append(TimelineEntry(incident.id, now, "notified", ENGINE, detail))

    def write(self, store: AlertStore, now: float) -> None:
        store.enqueue_many(self.items, now)
        store.log_many(self.logs, now)
        store.add_events(self.events)
        dropped = set(self.drops)
        store.save_groups([g for g in self.groups if g.key not in dropped])
        store.drop_groups(sorted(dropped))
        for incident_id, values in self.incidents:
            store.update_incident(incident_id, values)
