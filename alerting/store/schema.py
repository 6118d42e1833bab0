"""The alerting store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

This is the schema the migrations (``migrations/versions``) build; a test compares the two on both
databases, so a table changed here without a migration fails CI. JSON values are kept as text (one
portable type; nothing queries inside them), times as float epoch seconds like everywhere in Vigil.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, Table, Text

metadata = MetaData()

alerts = Table(
    "alerts",
    metadata,
    Column("fingerprint", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("annotations", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("recommended_action", Text, nullable=False, server_default=""),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("published_version", Integer, nullable=False, server_default="0"),
    Column("incident_id", Integer),  # the incident it belongs to now
    Column("role", Text),  # member | symptom (an inhibited consequence of another member)
    Column("muted", Text),  # why it is muted now (silence, maintenance, inhibition), or null
    Column("source", Text, nullable=False, server_default="detection"),  # detection|prediction|alertmanager
    Column("generator_url", Text),
    Column("alertname", Text, nullable=False, server_default=""),  # labels["alertname"], for indexed lookups
)
Index("alerts_status", alerts.c.status)
Index("alerts_firing_name", alerts.c.status, alerts.c.alertname)
Index("alerts_page", alerts.c.updated_at, alerts.c.fingerprint)
Index("alerts_status_page", alerts.c.status, alerts.c.updated_at, alerts.c.fingerprint)
Index("alerts_incident", alerts.c.incident_id)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False, unique=True),
    Column("domain", Text, nullable=False),  # kind:id
    Column("host", Text),  # the node of a GPU, disk or node domain: bursts find the young incidents under them
    Column("state", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("priority", Float, nullable=False, server_default="0"),
    Column("title", Text, nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("acknowledged_at", Float),
    Column("acknowledged_by", Text),
    Column("resolved_at", Float),
    Column("resolved_by", Text),
    Column("assignee", Text),
    Column("escalation_policy", Text),
    Column("escalation_level", Integer, nullable=False, server_default="0"),
    Column("next_escalation_at", Float),
    Column("merged_into", Integer),
    Column("detail", Text, nullable=False, server_default="{}"),
)
Index("incidents_state", incidents.c.state, incidents.c.updated_at, incidents.c.id)
Index("incidents_domain", incidents.c.domain, incidents.c.state)
Index("incidents_host", incidents.c.host, incidents.c.opened_at)
Index("incidents_escalation", incidents.c.next_escalation_at)
Index("incidents_priority", incidents.c.priority)

incident_members = Table(
    "incident_members",
    metadata,
    Column("incident_id", Integer, primary_key=True),
    Column("fingerprint", Text, primary_key=True),
    Column("joined_at", Float, nullable=False),
    Column("role", Text, nullable=False, server_default="member"),
)
Index("incident_members_fp", incident_members.c.fingerprint)

incident_events = Table(
    "incident_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default="{}"),
)
Index("incident_events_incident", incident_events.c.incident_id, incident_events.c.id)
Index("incident_events_at", incident_events.c.at)

notification_groups = Table(
    "notification_groups",
    metadata,
    Column("key", Text, primary_key=True),
    Column("incident_id", Integer, nullable=False),
    Column("route", Text, nullable=False),
    Column("receiver", Text, nullable=False),
    Column("dedup_key", Text, nullable=False),
    Column("group_labels", Text, nullable=False, server_default="{}"),
    Column("next_flush_at", Float),
    Column("last_notified_at", Float),
    Column("notified_firing", Text, nullable=False, server_default="[]"),
    Column("notified_resolved", Text, nullable=False, server_default="[]"),
    Column("created_at", Float, nullable=False),
)
Index("notification_groups_due", notification_groups.c.next_flush_at)
Index("notification_groups_incident", notification_groups.c.incident_id)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),  # the dedup key: rows of one key leave in order
    Column("incident_id", Integer),
    Column("notifier", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("state", Text, nullable=False, server_default="pending"),
    Column("last_error", Text),
)
Index("outbox_pending", outbox.c.state, outbox.c.next_attempt_at)
Index("outbox_due", outbox.c.notifier, outbox.c.state, outbox.c.next_attempt_at)
Index("outbox_finished", outbox.c.state, outbox.c.created_at)
Index("outbox_head", outbox.c.key, outbox.c.notifier, outbox.c.state, outbox.c.id)

notification_log = Table(
    "notification_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("incident_id", Integer),
    Column("notifier", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", Text, nullable=False),  # queued, skipped, delivered, failed
    Column("sent_at", Float, nullable=False),
)
Index("notification_log_key", notification_log.c.key)
Index("notification_log_sent", notification_log.c.sent_at)
Index("notification_log_incident", notification_log.c.incident_id)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", Text, nullable=False),
    Column("at", Float, nullable=False),
    Column("status", Text, nullable=False),
    Column("incident_id", Integer),
    Column("trail", Text, nullable=False),  # [{stage, decision, reason, detail}], one pass of the pipeline
)
Index("alert_history_fp", alert_history.c.fingerprint, alert_history.c.id)
Index("alert_history_at", alert_history.c.at)

silences = Table(
    "silences",
    metadata,
    Column("id", Text, primary_key=True),
    Column("matchers", Text, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expired_by", Text),
)
Index("silences_ends", silences.c.ends_at)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer),
    Column("kind", Text, nullable=False),  # what asks: remediation, canary, ...
    Column("subject", Text, nullable=False),  # what would happen, in words ("drain node-05")
    Column("state", Text, nullable=False, server_default="pending"),  # pending|approved|rejected|expired
    Column("requested_by", Text, nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("decided_by", Text),
    Column("decided_at", Float),
    Column("detail", Text, nullable=False, server_default="{}"),
)
Index("approvals_state", approvals.c.state, approvals.c.requested_at)

# Changes whenever a change an API reader can see is committed (alerts, incidents): a cached page is
# fresh exactly while the version it was built at is current.
meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Integer, nullable=False),
)

# ---------------------------------------------------------------------------------------------- remediation
# One run per incident and runbook; its steps carry their idempotency keys and outcomes, so a restarted
# runner resumes where the last one stopped (alerting/runbooks/executor.py).
remediation_runs = Table(
    "remediation_runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("incident_key", Text, nullable=False),
    Column("incident_id", Integer),
    Column("runbook", Text, nullable=False),
    Column("mode", Text, nullable=False),  # dry_run | execute
    Column("state", Text, nullable=False),  # planned|running|waiting_approval|verifying|succeeded|failed|...
    Column("labels", Text, nullable=False, server_default="{}"),
    Column("plan", Text, nullable=False, server_default="{}"),  # the plan as first made (JSON)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("next_at", Float),  # when the runner looks at it again; null: nothing to do (finished, dry run)
    Column("verify_since", Float),  # when verification started
    Column("detail", Text, nullable=False, server_default="{}"),
)
Index("remediation_runs_incident", remediation_runs.c.incident_key, remediation_runs.c.runbook, unique=True)
Index("remediation_runs_due", remediation_runs.c.next_at)

remediation_steps = Table(
    "remediation_steps",
    metadata,
    Column("key", Text, primary_key=True),  # <run id>/<phase>/<index>: the idempotency key
    Column("run_id", Text, nullable=False),
    Column("phase", Text, nullable=False),  # steps | on_success | rollback
    Column("idx", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("params", Text, nullable=False, server_default="{}"),
    Column("target", Text),  # the node it changes
    Column("job", Text),
    Column("state", Text, nullable=False),  # pending | running | succeeded | failed | skipped
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("result", Text, nullable=False, server_default="{}"),
)
Index("remediation_steps_run", remediation_steps.c.run_id, remediation_steps.c.phase, remediation_steps.c.idx)
Index("remediation_steps_recent", remediation_steps.c.started_at)

# One row per incident of an XID on one GPU (serial, or host/index until the serial is known): the XID
# policy's ladder counts them within its windows, across restarts.
xid_episodes = Table(
    "xid_episodes",
    metadata,
    Column("gpu", Text, primary_key=True),
    Column("code", Integer, primary_key=True),
    Column("incident_key", Text, primary_key=True),
    Column("at", Float, nullable=False),
)

# Append-only, hash-chained: each record's hash covers its canonical JSON and the previous record's hash.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("actor", Text, nullable=False),
    Column("kind", Text, nullable=False),  # plan, verdict, approval_requested, approved, action, result, ...
    Column("run_id", Text),
    Column("record", Text, nullable=False),  # canonical JSON of {seq, at, actor, kind, run_id, detail}
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
)
Index("audit_log_run", audit_log.c.run_id)

# One row (id 1): the newest audit record's seq and hash, written in the same transaction as the record,
# so cutting the newest records off the log is seen (the chain alone stays valid when truncated).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", Text, nullable=False),
)
