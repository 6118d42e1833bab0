"""Remediation runs and steps, the XID ladder's episodes, and the hash-chained audit log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from vigil.alerting.store.base import StoreBase, dumps
from vigil.alerting.store.schema import (
    approvals,
    audit_head,
    audit_log,
    remediation_runs,
    remediation_steps,
    xid_episodes,
)

GENESIS = "0" * 64
# A run in one of these states is still working on its nodes.
ACTIVE_RUNS = ("running", "waiting_approval", "verifying", "returning", "rolling_back")


def canonical(value: Any) -> str:
    """The one JSON form that is hashed: sorted keys, no spaces, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(prev_hash: str, record: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{record}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    incident_key: str
    incident_id: int | None
    runbook: str
    mode: str
    state: str
    labels: Mapping[str, str]
    plan: Mapping[str, Any]
    created_at: float
    updated_at: float
    next_at: float | None
    verify_since: float | None
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StepRow:
    key: str
    run_id: str
    phase: str
    idx: int
    name: str
    action: str
    params: Mapping[str, Any]
    target: str | None
    job: str | None
    state: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    result: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at: float
    actor: str
    kind: str
    run_id: str | None
    record: str
    prev_hash: str
    hash: str


def _run(row: Any) -> RunRow:
    return RunRow(
        row.id,
        row.incident_key,
        row.incident_id,
        row.runbook,
        row.mode,
        row.state,
        json.loads(row.labels),
        json.loads(row.plan),
        row.created_at,
        row.updated_at,
        row.next_at,
        row.verify_since,
        json.loads(row.detail),
    )


def _step(row: Any) -> StepRow:
    return StepRow(
        row.key,
        row.run_id,
        row.phase,
        row.idx,
        row.name,
        row.action,
        json.loads(row.params),
        row.target,
        row.job,
        row.state,
        row.attempts,
        row.started_at,
        row.finished_at,
        json.loads(row.result),
    )


_JSON_COLUMNS = ("labels", "plan", "detail", "params", "result")


def _encode(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: dumps(v) if k in _JSON_COLUMNS and not isinstance(v, str) else v for k, v in values.items()}


class RemediationRows(StoreBase):
    # ------------------------------------------------------------------ runs

    def create_run(
        self, values: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], also_keys: Sequence[str] = ()
    ) -> bool:
        """Insert a run and its steps unless the incident (or one it absorbed, ``also_keys``) already has
        a run of that runbook; True if new."""
        with self.transaction():
            query = select(remediation_runs.c.id).where(
                remediation_runs.c.incident_key.in_([values["incident_key"], *also_keys]),
                remediation_runs.c.runbook == values["runbook"],
            )
            if self._read(query):
                return False
            self._write(insert(remediation_runs), _encode(values))
            if steps:
                self._write(insert(remediation_steps), [_encode(s) for s in steps])
            self._changed()
            return True

    def run_counts(self) -> dict[tuple[str, str], int]:
        """(runbook, state) -> runs recorded (``vigil_remediation_runs``): one grouped count."""
        c = remediation_runs.c
        rows = self._read(select(c.runbook, c.state, func.count()).group_by(c.runbook, c.state))
        return {(str(runbook), str(state)): int(n) for runbook, state, n in rows}

    def step_counts(self) -> dict[tuple[str, str], int]:
        """(action, state) -> steps recorded (``vigil_remediation_steps``): one grouped count."""
        c = remediation_steps.c
        rows = self._read(select(c.action, c.state, func.count()).group_by(c.action, c.state))
        return {(str(action), str(state)): int(n) for action, state, n in rows}

    def run(self, run_id: str) -> RunRow | None:
        rows = self._read(select(remediation_runs).where(remediation_runs.c.id == run_id))
        return _run(rows[0]) if rows else None

    def runs(self, incident: str | int | None = None, state: str | None = None, limit: int = 200) -> list[RunRow]:
        """Newest first; ``incident``: its key (str) or id (int)."""
        query = select(remediation_runs).order_by(remediation_runs.c.created_at.desc()).limit(limit)
        if isinstance(incident, int):
            query = query.where(remediation_runs.c.incident_id == incident)
        elif isinstance(incident, str):
            query = query.where(remediation_runs.c.incident_key == incident)
        if state is not None:
            query = query.where(remediation_runs.c.state == state)
        return [_run(r) for r in self._read(query)]

    def due_runs(self, now: float, limit: int = 100) -> list[RunRow]:
        due = remediation_runs.c.next_at
        query = select(remediation_runs).where(due.is_not(None), due <= now)
        return [_run(r) for r in self._read(query.order_by(remediation_runs.c.next_at).limit(limit))]

    def next_run_at(self) -> float | None:
        value = self._scalar(select(func.min(remediation_runs.c.next_at)))
        return float(value) if value is not None else None

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.transaction():
            self._write(update(remediation_runs).where(remediation_runs.c.id == run_id).values(_encode(values)))
            self._changed()

    # ------------------------------------------------------------------ steps

    def steps(self, run_id: str) -> list[StepRow]:
        query = select(remediation_steps).where(remediation_steps.c.run_id == run_id)
        order = {"steps": 0, "on_success": 1, "rollback": 2}
        rows = [_step(r) for r in self._read(query)]
        return sorted(rows, key=lambda s: (order.get(s.phase, 3), s.idx))

    def add_steps(self, steps: Sequence[Mapping[str, Any]]) -> None:
        if steps:
            self._write(insert(remediation_steps), [_encode(s) for s in steps])

    def update_step(self, key: str, **values: Any) -> None:
        self._write(update(remediation_steps).where(remediation_steps.c.key == key).values(_encode(values)))

    def acted_since(self, since: float) -> list[StepRow]:
        """Steps that changed, or are changing, a node since ``since``: what the guards count."""
        query = select(remediation_steps).where(
            remediation_steps.c.started_at >= since,
            remediation_steps.c.state.in_(("running", "succeeded")),
        )
        return [_step(r) for r in self._read(query)]

    def nodes_in_remediation(self) -> dict[str, tuple[str, int | None]]:
        """Nodes an unfinished run has changed (drained, rebooted, taken out of serving): node -> (run
        id, the incident it remediates)."""
        steps, runs = remediation_steps, remediation_runs
        query = (
            select(steps.c.target, steps.c.run_id, runs.c.incident_id)
            .join(runs, runs.c.id == steps.c.run_id)
            .where(runs.c.state.in_(ACTIVE_RUNS), steps.c.state == "succeeded", steps.c.target.is_not(None))
        )
        return {str(target): (str(run_id), incident) for target, run_id, incident in self._read(query)}

    def nodes_seen(self) -> int:
        query = select(func.count(func.distinct(remediation_steps.c.target)))
        return int(self._scalar(query) or 0)

    # ------------------------------------------------------------------ approvals of steps

    def step_approvals(self, since: float) -> list[dict[str, Any]]:
        query = select(approvals).where(approvals.c.kind == "remediation", approvals.c.requested_at >= since)
        rows = self._read(query.order_by(approvals.c.id))
        return [{**dict(r._mapping), "detail": json.loads(r.detail)} for r in rows]

    # ------------------------------------------------------------------ the XID ladder

    def count_xid(
        self,
        gpu: str,
        code: int,
        incident_key: str,
        at: float,
        windows: Sequence[float],
        record: bool = True,
        also_keys: Sequence[str] = (),
    ) -> dict[float, int]:
        """Count the incidents of ``code`` on ``gpu`` per window, this one included; ``record`` stores it
        (once per incident) so later incidents count it. An incident that absorbed one already counted
        (``also_keys``: a GPU incident folded into its node's) is the same episode, not a second."""
        with self.transaction():
            rows = self._read(
                select(xid_episodes.c.at, xid_episodes.c.incident_key).where(
                    xid_episodes.c.gpu == gpu, xid_episodes.c.code == code
                )
            )
            times = [r.at for r in rows]
            if not any(r.incident_key in (incident_key, *also_keys) for r in rows):
                times.append(at)
                if record:
                    row = {"gpu": gpu, "code": code, "incident_key": incident_key, "at": at}
                    self._write(insert(xid_episodes), row)
        return {w: sum(1 for t in times if at - w < t <= at) for w in windows}

    # ------------------------------------------------------------------ the audit log

    def audit(self, at: float, actor: str, kind: str, run_id: str | None, detail: Mapping[str, Any]) -> int:
        """Append one record, chained to the head (inside the write lock, so the chain never forks), and
        move the head to it in the same transaction. Chaining from the head, not from the log's last
        row, means a record appended after the newest ones were cut off does not hide the cut."""
        with self.transaction():
            head = self.audit_head()
            seq = head[0] + 1 if head else 1
            prev = head[1] if head else GENESIS
            record = canonical({"seq": seq, "at": at, "actor": actor, "kind": kind, "run_id": run_id, "detail": detail})
            row = {"seq": seq, "at": at, "actor": actor, "kind": kind, "run_id": run_id, "record": record}
            digest = chain_hash(prev, record)
            self._write(insert(audit_log), {**row, "prev_hash": prev, "hash": digest})
            if head is None:
                self._write(insert(audit_head), {"id": 1, "seq": seq, "hash": digest})
            else:
                self._write(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
            return seq

    def audit_head(self) -> tuple[int, str] | None:
        """The newest record's (seq, hash) as the head row keeps it; None before the first record."""
        rows = self._read(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1))
        return (int(rows[0].seq), str(rows[0].hash)) if rows else None

    def audit_rows(self, batch: int = 1000) -> Iterator[AuditRow]:
        after = 0
        while True:
            query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(batch)
            rows = self._read(query)
            for r in rows:
                yield AuditRow(r.seq, r.at, r.actor, r.kind, r.run_id, r.record, r.prev_hash, r.hash)
            if len(rows) < batch:
                return
            after = rows[-1].seq
