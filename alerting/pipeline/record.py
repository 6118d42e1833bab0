"""Record: each alert's trail through the stages, one ``alert_history`` row per alert per pass.

A dropped candidate is recorded too (a replay, a duplicate), except a resolve for an alert that
never fired: predictions send those for every healthy GPU, and they say nothing.
"""

from __future__ import annotations

from vigil.alerting.pipeline.base import Batch, Candidate


class Record:
    name = "record"

    def run(self, batch: Batch) -> list[Candidate]:
        rows = []
        for c in batch.everything:
            if c.state is None and c.stored is None:
                continue
            status = (c.state or c.alert).status
            rows.append(
                (
                    c.fingerprint,
                    batch.now,
                    status,
                    c.incident_id or (c.stored.incident_id if c.stored else None),
                    c.trail,
                )
            )
        batch.store.record_history(rows)
        return batch.candidates
