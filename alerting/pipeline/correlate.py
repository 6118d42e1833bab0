"""Correlation: each alert joins the incident of its failure domain, or opens one.

An alert's failure domains, most specific first: its GPU (or disk), its node, its node's switch and
rack (topology), its job (its own ``job_id`` label). It joins the open incident of the most specific
domain that has one, and opens an incident at its most specific domain otherwise; an alert that
names none of these gets a ``group`` domain from ``correlation.fallback_by`` (Alertmanager-style).

A *burst* overrides that: when, within ``burst.window``, alerts come from at least ``min_gpus`` GPUs
of one node, or from at least ``min_nodes`` nodes under one switch, rack or job, the alert goes to
one incident at that common domain, and open incidents about GPUs and nodes inside it that are
younger than the window are merged into it. The window counts a whole batch before any alert is
assigned, so a storm that arrives in one poll opens one incident, not a node incident per node first.

An inhibited alert (a symptom) joins the incident of the alert that inhibits it. A resolve stays in
the incident it belonged to; an escalation stays too while that incident is open.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from vigil.alerting.model import Domain, Incident
from vigil.alerting.pipeline.base import Batch, Candidate
from vigil.alerting.pipeline.book import IncidentBook
from vigil.alerting.pipeline.mute import UnderRemediation
from vigil.alerting.priority import RecoveryCatalog
from vigil.alerting.sections import BurstConfig
from vigil.alerting.topology import Topology

BURST_KINDS = ("switch", "rack", "job")  # in the order a burst prefers them (the network first)


def domains_of(labels: Mapping[str, str], scope: Mapping[str, str], fallback_by: Sequence[str]) -> tuple[Domain, ...]:
    out: list[Domain] = []
    host = scope.get("host", "")
    if host and scope.get("gpu_index"):
        out.append(Domain("gpu", f"{host}/gpu{scope['gpu_index']}"))
    elif host and scope.get("disk_serial"):
        out.append(Domain("disk", f"{host}/{scope['disk_serial']}"))
    if host:
        out.append(Domain("node", host))
    for kind in ("switch", "rack"):
        if scope.get(kind):
            out.append(Domain(kind, scope[kind]))
    if labels.get("job_id"):  # its own label: a node's job from the topology is scope, not a domain
        out.append(Domain("job", labels["job_id"]))
    if not out:
        out.append(Domain("group", ",".join(f"{k}={scope.get(k, '')}" for k in fallback_by)))
    return tuple(out)


class BurstWindow:
    """Recent (time, child) per parent domain, e.g. which nodes alerted under switch sw1 lately."""

    def __init__(self, config: BurstConfig) -> None:
        self._config = config
        self._seen: dict[str, deque[tuple[float, str]]] = {}

    def add(self, parent: Domain, child: str, at: float) -> None:
        self._seen.setdefault(parent.key, deque()).append((at, child))

    def qualifies(self, parent: Domain, now: float) -> bool:
        seen = self._seen.get(parent.key)
        if not seen:
            return False
        while seen and seen[0][0] < now - self._config.window:
            seen.popleft()
        need = self._config.min_gpus if parent.kind == "node" else self._config.min_nodes
        return len({child for _, child in seen}) >= need


def burst_parents(scope: Mapping[str, str]) -> list[tuple[Domain, str]]:
    """(parent domain, this alert's child id in it) for every domain a burst can form at."""
    host = scope.get("host", "")
    if not host:
        return []
    out = [(Domain("node", host), scope["gpu_index"])] if scope.get("gpu_index") else []
    for kind in ("switch", "rack"):
        if scope.get(kind):
            out.append((Domain(kind, scope[kind]), host))
    if scope.get("job_id"):
        out.append((Domain("job", scope["job_id"]), host))
    return out


class Correlate:
    name = "correlate"

    def __init__(
        self, topology: Topology, catalog: RecoveryCatalog, burst: BurstConfig, fallback_by: Sequence[str]
    ) -> None:
        self._topology = topology
        self._catalog = catalog
        self._burst = burst
        self._fallback_by = tuple(fallback_by)
        self.window = BurstWindow(burst)  # in memory: a restart forgets the last few seconds of it
        self.book: IncidentBook | None = None
        self._last: dict[str, int] = {}
        self._swept: set[str] = set()
        self._robot = UnderRemediation({})

    def run(self, batch: Batch) -> list[Candidate]:
        for c in batch.candidates:
            c.domains = domains_of(c.alert.labels, c.scope, self._fallback_by)
        keys = {d.key for c in batch.candidates for d in c.domains} | {
            p.key for c in batch.candidates for p, _ in burst_parents(c.scope)
        }
        book = self.book = IncidentBook(batch.store, batch.now, self._topology, self._catalog, keys, self._burst.window)
        batch.incidents = book.by_id
        self._swept = set()  # burst domains whose young incidents this batch already merged
        self._robot = UnderRemediation(batch.nodes_in_remediation())
        fresh = [
            c for c in batch.candidates if c.state is not None and c.state.status == "firing" and c.reason == "first"
        ]
        for c in fresh:
            # The idle GPUs of a node the robot drained alert by design: no burst evidence.
            if c.role == "member" and self._robot.working_on(c.scope) is None:
                for parent, child in burst_parents(c.scope):
                    self.window.add(parent, child, batch.now)
        # In order (an alert's resolve follows its firing), except that a symptom whose cause comes
        # later in the batch waits for its cause's incident.
        self._last = {}  # fingerprint -> the incident this batch put it in
        causes = {c.fingerprint for c in batch.candidates}
        deferred = []
        for c in batch.candidates:
            if c.role == "symptom" and c.mute is not None and c.mute.cause in causes and c.mute.cause not in self._last:
                deferred.append(c)
                continue
            self._assign(c, book, batch)
        for c in deferred:
            self._assign(c, book, batch)
        batch.touched_incidents |= book.flush()
        return batch.candidates

    def _assign(self, c: Candidate, book: IncidentBook, batch: Batch) -> None:
        stored_incident = book.get(c.stored.incident_id) if c.stored else None
        if c.state is not None and c.state.status == "resolved":
            c.incident_id = self._last.get(c.fingerprint, c.stored.incident_id if c.stored else None)
            if c.incident_id is not None:
                book.resolve_member(c.incident_id, c.fingerprint)
            c.note(self.name, "resolve", f"resolves in incident {c.incident_id}", incident=c.incident_id)
            return
        if c.reason == "escalated" and stored_incident is not None and stored_incident.is_open:
            self._join(c, stored_incident, book, "still in its incident (escalated)")
            return
        if c.role == "symptom" and c.mute is not None:
            cause = self._cause_incident(c, batch, book)
            if cause is not None:
                self._join(c, cause, book, f"a symptom of {c.mute.cause}")
                return
            c.role = "member"  # its cause has no incident yet (an older store): correlate it on its own
        worked = self._robot.working_on(c.scope)
        remediated = book.get(worked[1]) if worked is not None else None
        if worked is not None and remediated is not None and remediated.is_open:
            self._join(c, remediated, book, f"its node is being remediated (run {worked[0]})")
            return
        burst = next((p for p, _ in burst_parents(c.scope) if self._burst_at(p, batch)), None)
        if burst is not None:
            self._burst_join(c, burst, book)
            return
        for domain in c.domains:
            found = book.by_domain.get(domain.key)
            if found is not None:
                self._join(c, found, book, f"joins the open incident of {domain.kind} {domain.id}")
                return
        target = c.domains[0]
        incident = book.open(target, c.alert.severity, _title(c, target), {})
        self._join(c, incident, book, f"opens an incident for {target.kind} {target.id}", opened=True)

    def _burst_at(self, parent: Domain, batch: Batch) -> bool:
        return self.window.qualifies(parent, batch.now)

    def _burst_join(self, c: Candidate, parent: Domain, book: IncidentBook) -> None:
        incident = book.by_domain.get(parent.key)
        opened = incident is None
        if incident is None:
            title = f"burst under {parent.kind} {parent.id}"
            incident = book.open(parent, c.alert.severity, title, {"burst": True})
        # Only when the burst incident is new: while it is open, alerts inside it join it directly, so
        # no younger incident can appear under it.
        if opened and parent.key not in self._swept:
            self._swept.add(parent.key)
            for young in book.young_under(parent, self._burst.window):
                book.merge(young, incident)
        reason = f"burst: {parent.kind} {parent.id} has alerts from many {'GPUs' if parent.kind == 'node' else 'nodes'}"
        self._join(c, incident, book, reason, opened=opened)

    def _cause_incident(self, c: Candidate, batch: Batch, book: IncidentBook) -> Incident | None:
        cause = c.mute.cause if c.mute else None
        if cause in self._last:
            return book.get(self._last[cause])
        stored = batch.store.stored([cause]).get(cause) if cause else None
        found = book.get(stored.incident_id) if stored is not None else None
        return found if found is not None and found.is_open else None

    def _join(self, c: Candidate, incident: Incident, book: IncidentBook, reason: str, opened: bool = False) -> None:
        c.incident_id = self._last[c.fingerprint] = incident.id
        book.join(incident.id, c.fingerprint, c.role, c.scope, c.alert.severity)
        c.note(self.name, "open" if opened else "join", reason, incident=incident.id, key=incident.key)


def _title(c: Candidate, domain: Domain) -> str:
    summary = c.alert.annotations.get("summary", "")
    what = c.alert.labels.get("alertname", "alert")
    return f"{what} on {domain.kind} {domain.id}" + (f": {summary}" if summary else "")
