"""The audit log's check: ``vigil audit verify`` walks the hash chain and names the first bad record.

Every plan, guard verdict, approval, action, result and actor is one record (``AlertStore.audit``):
``seq`` (1, 2, 3... with no gap), the canonical JSON of the record (which repeats its ``seq``, time,
actor and kind), the previous record's hash, and ``sha256(prev_hash + "\\n" + record)``. A changed
record fails its own hash; a removed one leaves a gap and breaks the next record's ``prev_hash``; two
swapped records fail the ``seq`` inside their JSON and the chain. Truncating the newest records
leaves a valid shorter chain, so the store keeps the head (the newest record's ``seq`` and ``hash``)
in a row of its own (``audit_head``), moved in the same transaction as each record: a chain that
ends before the head, or at a different hash, has lost its newest records. (Someone who can rewrite
both the log and the head row can still cut both; ship the head elsewhere to guard against that.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from vigil.alerting.store.remediation import GENESIS, AuditRow, chain_hash


@dataclass(frozen=True, slots=True)
class AuditCheck:
    ok: bool
    records: int
    head: str  # the last good record's hash
    bad_seq: int | None = None
    reason: str = ""


def verify_chain(rows: Iterable[AuditRow], head: tuple[int, str] | None = None) -> AuditCheck:
    """Walk the chain; then, when the store's ``head`` (seq, hash) is given, check that the chain ends
    exactly there."""
    prev, expected, count = GENESIS, 1, 0
    for row in rows:
        problem = _problem(row, prev, expected)
        if problem:
            return AuditCheck(False, count, prev, row.seq, problem)
        prev, expected, count = row.hash, row.seq + 1, count + 1
    if head is None:
        if count:
            return AuditCheck(False, count, prev, count, "the head row is missing though the log has records")
        return AuditCheck(True, 0, prev)
    seq, digest = head
    if seq > count:
        why = f"the log ends at record {count} but its head is record {seq}: the newest records were removed"
        return AuditCheck(False, count, prev, count + 1, why)
    if seq < count:
        return AuditCheck(False, seq, prev, seq + 1, f"records after the head (record {seq}) were added outside Vigil")
    if digest != prev:
        return AuditCheck(False, count - 1, prev, seq, "its hash is not the head's: the newest record was replaced")
    return AuditCheck(True, count, prev)


def _problem(row: AuditRow, prev: str, expected: int) -> str:
    if row.seq != expected:
        return f"expected record {expected} next, found {row.seq}: a record was removed or reordered"
    if row.prev_hash != prev:
        return "its prev_hash is not the previous record's hash: a record before it was removed or changed"
    if chain_hash(row.prev_hash, row.record) != row.hash:
        return "its hash does not match its content: the record was changed"
    try:
        body = json.loads(row.record)
    except ValueError:
        return "its record is not JSON"
    columns = {"seq": row.seq, "at": row.at, "actor": row.actor, "kind": row.kind, "run_id": row.run_id}
    for name, value in columns.items():
        if body.get(name) != value:
            return f"its {name} column ({value!r}) differs from the record's ({body.get(name)!r})"
    return ""
