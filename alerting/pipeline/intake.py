"""The first two stages: intake (what an alert's scope is) and dedup (what it changes).

An alert's *scope* is what the later stages match on: its labels, plus what the topology implies
when the alert does not say it (``rack``, ``switch``, and ``job_id`` when its node runs exactly one
job), plus ``source`` (detection, prediction, alertmanager). Labels an alert carries always win.

Dedup is ``intake.decide`` (the alert transition rule: first, resolved, escalated, no_change) over the
stored state; a replayed or repeated event is ``no_change`` and stops here, so it never pages twice.
Within one batch, a fingerprint's later candidates see its earlier ones' state.
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.alerting.intake import decide
from vigil.alerting.pipeline.base import Batch, Candidate
from vigil.alerting.topology import Topology

from vigil.events import Alert


def scope_of(labels: Mapping[str, str], source: str, topology: Topology) -> dict[str, str]:
    scope = dict(labels)
    host = scope.get("host")
    if host:
        if "rack" not in scope and host in topology.rack:
            scope["rack"] = topology.rack[host]
        if "switch" not in scope and host in topology.switch:
            scope["switch"] = topology.switch[host]
        jobs = topology.jobs_of.get(host, ())
        if "job_id" not in scope and len(jobs) == 1:
            scope["job_id"] = jobs[0]
    scope.setdefault("source", source)
    return scope


class Intake:
    name = "intake"

    def __init__(self, topology: Topology) -> None:
        self._topology = topology

    def run(self, batch: Batch) -> list[Candidate]:
        for c in batch.candidates:
            c.scope = scope_of(c.alert.labels, c.source, self._topology)
            c.note(self.name, "pass", f"{c.alert.status} from {c.source}")
        return batch.candidates


class Dedup:
    name = "dedup"

    def run(self, batch: Batch) -> list[Candidate]:
        stored = batch.store.stored(c.fingerprint for c in batch.candidates)
        current: dict[str, Alert | None] = {fp: s.alert for fp, s in stored.items()}
        going: list[Candidate] = []
        for c in batch.candidates:
            c.stored = stored.get(c.fingerprint)
            transition = decide(current.get(c.fingerprint), c.alert, c.escalate)
            c.reason = transition.reason
            if transition.alert is None:
                was = current.get(c.fingerprint)
                why = f"already {was.status}" if was is not None else "resolves an alert that never fired"
                c.note(self.name, "drop", f"no_change: {why}")
                continue
            c.state = transition.alert
            current[c.fingerprint] = transition.alert
            c.note(self.name, "pass", transition.reason)
            going.append(c)
        return going
