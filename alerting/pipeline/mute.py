"""Inhibition, then silences and maintenance windows: the three muters.

Inhibit runs before correlation (Alertmanager runs it at notification time): an inhibited alert is a
symptom of the alert that inhibits it and joins that alert's incident, so the cause is correlation
evidence as much as a reason to stay quiet. Its sources are the firing alerts whose names a rule's
source can have (an indexed lookup) and this batch's own firing alerts.

Silences, maintenance windows and nodes under remediation mark an alert muted here (stored, shown in
its trail); they are checked again whenever a notification group is told (``notify.py``), so a
silence made after an alert fired still stops its repeats, escalations and the remediation receiver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vigil.alerting.inhibit import Inhibitor, Source
from vigil.alerting.maintenance import MaintenanceMuter
from vigil.alerting.pipeline.base import Batch, Candidate, Muter
from vigil.alerting.pipeline.base import Mute as MuteReason
from vigil.alerting.pipeline.intake import scope_of
from vigil.alerting.silences import Silencer
from vigil.alerting.topology import Topology


class Inhibit:
    name = "inhibit"

    def __init__(self, inhibitor: Inhibitor, topology: Topology) -> None:
        self._inhibitor = inhibitor
        self._topology = topology

    def sources(self, batch: Batch) -> list[Source]:
        """Firing alerts that may inhibit: stored ones (unless this batch resolves them) and the batch's."""
        leaving = {c.fingerprint for c in batch.candidates if c.state is not None and c.state.status == "resolved"}
        found = {
            s.alert.fingerprint: Source(
                s.alert.fingerprint, scope_of(s.alert.labels, s.source, self._topology), s.incident_id
            )
            for s in batch.store.firing(self._inhibitor.names())
            if s.alert.fingerprint not in leaving
        }
        names = self._inhibitor.names()
        for c in batch.candidates:
            if c.state is None or c.state.status != "firing":
                continue
            if names is None or c.alert.labels.get("alertname") in names:
                found[c.fingerprint] = Source(c.fingerprint, c.scope, c.stored.incident_id if c.stored else None)
        return list(found.values())

    def run(self, batch: Batch) -> list[Candidate]:
        if not self._inhibitor.rules:
            return batch.candidates
        self._inhibitor.load(self.sources(batch))
        for c in batch.candidates:
            if c.state is None or c.state.status != "firing":
                continue
            mute = self._inhibitor.mutes(c.fingerprint, c.scope, batch.now)
            if mute is None:
                c.note(self.name, "pass", "no rule inhibits it")
                continue
            c.mute, c.role = mute, "symptom"
            c.note(self.name, "mute", mute.reason, rule=mute.id, cause=mute.cause)
        return batch.candidates


class UnderRemediation:
    """A node a running remediation has changed (drained, rebooted) behaves as one in maintenance:
    its idle GPUs look anomalous by design, so its alerts wait, muted, until the run ends (then what
    still fires is told, as after a window). A new XID is news and is never muted."""

    def __init__(self, nodes: Mapping[str, tuple[str, int | None]]) -> None:
        self._nodes = nodes  # node -> (the run working on it, the incident it remediates)

    def working_on(self, labels: Mapping[str, str]) -> tuple[str, int | None] | None:
        """(run, incident) when a run works on the alert's node and the alert is not a new XID."""
        return None if "xid" in labels else self._nodes.get(labels.get("host", ""))

    def mutes(self, fingerprint: str, labels: Mapping[str, str], now: float) -> MuteReason | None:
        worked = self.working_on(labels)
        if worked is None:
            return None
        return MuteReason("remediation", worked[0], f"remediation run {worked[0]} is working on {labels['host']}")


class Mute:
    """Silences (the store's, loaded per batch), maintenance windows (config) and nodes under remediation."""

    name = "mute"

    def __init__(self, maintenance: MaintenanceMuter) -> None:
        self._maintenance = maintenance

    def muters(self, batch: Batch) -> Sequence[Muter]:
        silences = Silencer(batch.store.silences(active_at=batch.now))
        return [silences, self._maintenance, UnderRemediation(batch.nodes_in_remediation())]

    def run(self, batch: Batch) -> list[Candidate]:
        muters = self.muters(batch)
        for c in batch.candidates:
            if c.mute is not None or c.state is None or c.state.status != "firing":
                continue
            for muter in muters:
                mute = muter.mutes(c.fingerprint, c.scope, batch.now)
                if mute is not None:
                    c.mute = mute
                    c.note(self.name, "mute", mute.reason, by=mute.describe())
                    break
            else:
                c.note(self.name, "pass", "no silence or maintenance window")
        return batch.candidates
