"""The alerting store on both of its databases: a SQLite file and a real PostgreSQL server on loopback.

The same migrations build the same schema on both (compared with Alembic against ``schema.py``), a
store from before migrations is upgraded in place with its pending notifications, and every table's
methods behave the same.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from vigil.alerting.matchers import parse_matchers
from vigil.alerting.model import Domain, GroupState, Member, Silence, TimelineEntry
from vigil.alerting.reader import AlertReader
from vigil.alerting.store import AlertStore, Database, Enqueue
from vigil.alerting.store.schema import metadata

from tests.postgres import reset
from vigil.events import Alert

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database.sqlite(tmp_path / "alerts.db")
    else:
        url = request.getfixturevalue("postgres_url")
        reset(url)
        db = Database(url)
    yield db.migrate()
    db.dispose()


def alert(fp: str, status: str = "firing", **labels: str) -> Alert:
    return Alert(fp, status, {"alertname": "GpuHot", **labels}, {"summary": "hot"}, 100.0, None, "critical", "", 100.0)  # type: ignore[arg-type]


def test_migrations_build_exactly_the_schema_in_code(target: Database) -> None:
    with target.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_alerts_keep_versions_and_engine_columns_and_reader_sees_changes(target: Database) -> None:
    store = AlertStore(target)
    reader = AlertReader(target)
    before = reader.version()
    versions = store.save_alerts(
        [(alert("a1", host="n1"), {"incident_id": 7, "source": "alertmanager"}), (alert("a2"), {})]
    )
    assert versions == {"a1": 1, "a2": 1}
    assert reader.version() > before
    assert store.save_alerts([(alert("a1", "resolved", host="n1"), {})]) == {"a1": 2}
    stored = store.stored(["a1", "a2", "missing"])
    assert set(stored) == {"a1", "a2"}
    assert stored["a1"].incident_id == 7 and stored["a1"].source == "alertmanager"  # kept across the update
    assert stored["a1"].alert.status == "resolved" and stored["a2"].source == "detection"
    assert [(a.fingerprint, v) for a, v in store.unpublished()] == [("a1", 2), ("a2", 1)]
    store.mark_published({"a1": 2, "a2": 1})
    assert store.unpublished() == []
    assert [s.alert.fingerprint for s in store.firing()] == ["a2"]
    assert [a.fingerprint for a in reader.page("firing", 10, None).alerts] == ["a2"]
    store.close()
    reader.close()


def test_incidents_members_timeline_and_groups(target: Database) -> None:
    store = AlertStore(target)
    with store.transaction():
        iid = store.create_incident(
            {
                "key": "inc-1",
                "domain": Domain("node", "node-07"),
                "state": "open",
                "severity": "critical",
                "priority": 16.0,
                "title": "node-07",
                "opened_at": 1.0,
                "updated_at": 1.0,
                "detail": {"gpus": 8},
            }
        )
        store.add_members([Member(iid, "a1", 1.0), Member(iid, "a2", 2.0, "symptom")])
        store.add_events([TimelineEntry(iid, 1.0, "opened", "vigil", {"by": "a1"})])
    assert [i.key for i in store.open_incidents()] == ["inc-1"]
    store.update_incident(iid, {"state": "acknowledged", "acknowledged_by": "alice", "acknowledged_at": 3.0})
    found = store.incident(iid)
    assert found is not None and found.state == "acknowledged" and found.domain == Domain("node", "node-07")
    assert found.detail == {"gpus": 8} and store.incident_by_key("inc-1") == found
    assert [(m.fingerprint, m.role) for m in store.members(iid)] == [("a1", "member"), ("a2", "symptom")]
    assert [e.kind for e in store.timeline(iid)] == ["opened"]
    group = GroupState("g1", iid, "root", "oncall", "inc-1", {}, 10.0, created_at=1.0)
    store.save_groups([group])
    store.save_groups([GroupState("g1", iid, "root", "oncall", "inc-1", {}, 20.0, 9.0, ("a1",), created_at=1.0)])
    assert store.due_groups(15.0) == [] and [g.notified_firing for g in store.due_groups(20.0)] == [("a1",)]
    assert store.next_flush_at() == 20.0
    store.close()


def test_outbox_keeps_the_order_of_one_key_and_logs_what_was_queued(target: Database) -> None:
    store = AlertStore(target)
    with store.transaction():
        store.enqueue_many([Enqueue("k1", "pd", "first", {"n": 1}, 1), Enqueue("k2", "pd", "first", {"n": 2})], 5.0)
    store.enqueue("k1", "pd", "resolved", {"n": 3}, 6.0, incident_id=1)
    due = store.due(10.0, 10, "pd")
    assert [r.payload["n"] for r in due] == [1, 2]  # the resolve of k1 waits for k1's trigger
    store.finish(due[0], "delivered", None, 11.0)
    assert [r.payload["n"] for r in store.due(12.0, 10, "pd")] == [2, 3]
    assert [(e["key"], e["status"]) for e in store.notification_log()] == [
        ("k1", "queued"),
        ("k2", "queued"),
        ("k1", "delivered"),
    ]
    assert store.pending_count() == 2 and [r.notifier for r in store.orphans({"slack"})] == ["pd", "pd"]
    assert store.prune_outbox(100.0, 10) == 1 and store.pending_count() == 2
    store.close()


def test_silences_are_kept_after_they_expire_and_approvals_are_decided_once(target: Database) -> None:
    store = AlertStore(target)
    silence = Silence("s1", parse_matchers(['host=~"node-0[1-4]"']), 10.0, 100.0, "alice", "firmware", 5.0)
    store.save_silence(silence)
    assert [s.id for s in store.silences(active_at=50.0)] == ["s1"]
    assert store.expire_silence("s1", "bob", 60.0) and not store.expire_silence("s1", "bob", 61.0)
    kept = store.silence("s1")
    assert kept is not None and kept.state(60.0) == "expired" and kept.expired_by == "bob"
    assert store.silences(active_at=70.0) == [] and len(store.silences()) == 1
    assert kept.matchers[0].matches({"host": "node-03"}) and not kept.matchers[0].matches({"host": "node-13"})
    approval = store.request_approval("remediation", "drain node-05", "vigil", 1.0, incident_id=3, expires_at=50.0)
    assert store.decide_approval(approval, True, "alice", 2.0) and not store.decide_approval(
        approval, False, "bob", 3.0
    )
    assert store.approvals("approved")[0]["decided_by"] == "alice"
    store.close()


LEGACY = """
CREATE TABLE alerts (fingerprint TEXT PRIMARY KEY, status TEXT NOT NULL, labels TEXT NOT NULL,
  annotations TEXT NOT NULL, severity TEXT NOT NULL, starts_at REAL NOT NULL, ends_at REAL,
  updated_at REAL NOT NULL, recommended_action TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL DEFAULT 1,
  published_version INTEGER NOT NULL DEFAULT 0);
CREATE INDEX alerts_status ON alerts (status);
CREATE INDEX alerts_page ON alerts (updated_at, fingerprint);
CREATE INDEX alerts_status_page ON alerts (status, updated_at, fingerprint);
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, notifier TEXT NOT NULL,
  reason TEXT NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending', last_error TEXT);
CREATE INDEX outbox_pending ON outbox (state, next_attempt_at);
CREATE INDEX outbox_due ON outbox (notifier, state, next_attempt_at);
CREATE INDEX outbox_finished ON outbox (state, created_at);
CREATE INDEX outbox_head ON outbox (fingerprint, notifier, state, id);
CREATE TABLE notification_log (id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL,
  notifier TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL, sent_at REAL NOT NULL);
CREATE INDEX notification_log_fp ON notification_log (fingerprint);
CREATE INDEX notification_log_sent ON notification_log (sent_at);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('alerts_version', 41);
CREATE TRIGGER alerts_version_insert AFTER INSERT ON alerts
BEGIN UPDATE meta SET value = value + 1 WHERE key = 'alerts_version'; END;
INSERT INTO alerts (fingerprint, status, labels, annotations, severity, starts_at, updated_at)
  VALUES ('old', 'firing', '{"alertname": "GpuHot"}', '{}', 'critical', 1.0, 1.0);
INSERT INTO outbox (fingerprint, notifier, reason, payload, created_at, next_attempt_at)
  VALUES ('old', 'log', 'first', '{"version": "1"}', 1.0, 1.0);
"""


def test_a_store_from_before_migrations_is_upgraded_with_its_pending_notifications(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY)
    store = AlertStore(path)
    [row] = store.due(10.0, 10, "log")
    assert (row.key, row.payload) == ("old", {"version": "1"})  # still delivered after the upgrade
    assert store.get("old") is not None and store.stored(["old"])["old"].source == "detection"
    assert [s.alert.fingerprint for s in store.firing(["GpuHot"])] == ["old"]  # its name column was filled
    store.save_alerts([(alert("new"), {})])  # the old trigger is gone; the store bumps the version itself
    assert AlertReader(path).version() == 43  # 41, the old trigger on the legacy insert, then our bump
    with Database.sqlite(path).connect() as conn:
        diff = [d[0] for d in compare_metadata(MigrationContext.configure(conn), metadata)]
    # The same tables, columns and indexes; the old DDL only spelt floats REAL (the same storage class)
    # and left SQLite's primary keys nullable.
    assert {(kind, name) for kind, _, _, name, *_ in diff} <= {
        ("modify_type", col)
        for col in ("starts_at", "ends_at", "updated_at", "sent_at", "created_at", "next_attempt_at")
    } | {("modify_nullable", col) for col in ("fingerprint", "key", "id")}
    store.close()
