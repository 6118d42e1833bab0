"""The executor on a real SQLite alerting store with recording actions and a fake clock: the 20% correlated
failure stops at the blast radius and pages; an approval lets it go on; a restarted run repeats no step;
verification gates the return to service; the audit chain catches tampering (``vigil audit verify``)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner
from vigil.alerting.runbooks.actions import ActionResult, ActionSet, Wait
from vigil.alerting.runbooks.actions.build import catalog_actions
from vigil.alerting.runbooks.audit import verify_chain
from vigil.alerting.runbooks.config import BlastRadiusConfig, GuardsConfig, RemediationConfig
from vigil.alerting.runbooks.engine import Parts, Remediation
from vigil.alerting.runbooks.executor import Executor
from vigil.alerting.runbooks.loader import load_dir
from vigil.alerting.runbooks.model import Subject
from vigil.alerting.runbooks.policy import XidPolicy
from vigil.alerting.runbooks.runner import Approvals
from vigil.alerting.runbooks.verify import TelemetryWatch
from vigil.alerting.store import AlertStore

from vigil.cli.app import build_app
from vigil.clock import FakeClock
from vigil.events import LogEvent, TelemetryBatch


class Recording:
    """An action that records each effect; ``check`` reads the recorded state, as a real target's would."""

    def __init__(
        self, name: str, target: str | None, effects: Counter[tuple[str, str]], state: dict[str, set[str]]
    ) -> None:
        self.name, self.target, self.effects, self.state = name, target, effects, state
        self.schema: Mapping[str, Any] = {"type": "object"}
        self.destructive = name == "node.reboot"
        self.undo: str | None = None

    def check(self, params: Mapping[str, Any], key: str) -> bool:
        return key in self.state.setdefault(self.name, set())

    def execute(self, params: Mapping[str, Any], key: str) -> ActionResult:
        self.effects[(self.name, str(params.get("node", params.get("job", ""))))] += 1
        self.state.setdefault(self.name, set()).add(key)
        return ActionResult.done("recorded")

    def verify(self, params: Mapping[str, Any]) -> ActionResult:
        return ActionResult.done()


def build(tmp_path: Path, nodes: int = 20) -> tuple[Remediation, FakeClock, Counter[tuple[str, str]], TelemetryWatch]:
    effects: Counter[tuple[str, str]] = Counter()
    state: dict[str, set[str]] = {}
    names = [("slurm.drain", "node"), ("slurm.resume", "node"), ("slurm.requeue", None), ("node.reboot", "node")]
    actions = ActionSet([Wait(), *(Recording(n, t, effects, state) for n, t in names)])
    guards = GuardsConfig(blast_radius=BlastRadiusConfig(cluster_nodes=nodes))
    config = RemediationConfig(enabled=True, mode="execute", guards=guards)
    runbooks = load_dir(None, catalog_actions())
    clock = FakeClock()
    watch = TelemetryWatch()
    parts = Parts(config, runbooks, XidPolicy.load(known=runbooks), actions, clock, watch, ("pager",))
    return Remediation(parts, AlertStore(tmp_path / "alerts.db")), clock, effects, watch


def xid79(node: str) -> Subject:
    labels = {"alertname": "GpuXidFatal", "xid": "79", "host": node, "gpu_index": "1", "incident": f"i-{node}"}
    return Subject(f"key-{node}", labels)


def healthy(watch: TelemetryWatch, node: str, at: float) -> None:
    power = [f'gpu_power_watts{{gpu_index="{g}"}}' for g in range(8)]
    series = (*power, 'gpu_ecc_dbe_volatile_total{gpu_index="1"}')
    watch.observe(TelemetryBatch(node, "c", np.array([at]), series, np.ones((1, len(series)))))


def test_correlated_failure_of_20_percent_stops_at_the_blast_radius_then_an_approval_lets_it_go_on(
    tmp_path: Path,
) -> None:
    engine, clock, effects, _ = build(tmp_path, nodes=20)
    executor = Executor(engine)
    for node in ("node-01", "node-02", "node-03", "node-04"):  # 4 of 20 nodes: 20%
        assert engine.submit(xid79(node)) is not None
    executor.advance_due()
    drained = {n for (a, n) in effects if a == "slurm.drain"}
    assert len(drained) == 1  # 5% of 20 nodes within 10 minutes: one node
    runs = {r.labels["host"]: r for r in engine.store.runs()}
    waiting = sorted(h for h, r in runs.items() if r.state == "waiting_approval")
    assert len(waiting) == 3 and all("blast radius" in runs[h].detail["reason"] for h in waiting)
    pages = engine.store.due(clock.now() + 1, 100, "pager")
    assert len(pages) == 3 and all(p.reason == "approval_needed" for p in pages)
    approvals = Approvals(engine)
    pending = approvals.pending()
    assert len(pending) == 3 and {p.action for p in pending} == {"slurm.drain"}
    clock.advance(3)
    executor.advance_due()
    assert len({n for (a, n) in effects if a == "slurm.drain"}) == 1  # still waiting: nobody answered
    assert approvals.approve(pending[0].id, "alice")
    clock.advance(3)
    executor.advance_due()
    assert len({n for (a, n) in effects if a == "slurm.drain"}) == 2
    assert not approvals.approve(pending[0].id, "bob")  # decided already
    kinds = [r.kind for r in engine.store.audit_rows()]
    assert kinds.count("approval_requested") == 3 and "approved" in kinds


def test_a_restarted_executor_repeats_no_completed_step_and_resumes_only_after_verify(tmp_path: Path) -> None:
    engine, clock, effects, watch = build(tmp_path)
    engine.submit(xid79("node-07"))
    Executor(engine).advance_due()  # drain, requeue, reboot; then verifying
    run = engine.store.runs()[0]
    assert run.state == "verifying"
    # A "restart": a new store connection and executor over the same file; the step marked running is
    # checked before acting (its effect is recorded) and nothing is repeated.
    engine.store.update_step(f"{run.id}/steps/2", state="running")
    restarted = Remediation(engine.parts, AlertStore(tmp_path / "alerts.db"))
    clock.advance(1)
    restarted.store.update_run(run.id, state="running", next_at=clock.now())
    Executor(restarted).advance_due()
    once = {("slurm.drain", "node-07"): 1, ("slurm.requeue", "node-07"): 1, ("node.reboot", "node-07"): 1}
    assert effects == Counter(once)
    # Verify: no telemetry yet -> wait; every GPU back and quiet for the hold -> resume.
    clock.advance(10)
    Executor(restarted).advance_due()
    assert restarted.store.run(run.id).state == "verifying"  # type: ignore[union-attr]
    for _ in range(12):
        clock.advance(30)
        healthy(watch, "node-07", clock.now())
        Executor(restarted).advance_due()
    assert restarted.store.run(run.id).state == "succeeded"  # type: ignore[union-attr]
    assert effects[("slurm.resume", "node-07")] == 1


def test_a_new_xid_during_verification_escalates_instead_of_resuming(tmp_path: Path) -> None:
    engine, clock, effects, watch = build(tmp_path)
    engine.submit(xid79("node-08"))
    executor = Executor(engine)
    executor.advance_due()
    clock.advance(30)
    healthy(watch, "node-08", clock.now())
    watch.observe(LogEvent(clock.now(), "node-08", "c", "xid", 79, "Xid 79", gpu_index=1))
    executor.advance_due()
    run = engine.store.runs()[0]
    assert run.state == "escalated" and "new XID" in run.detail["reason"]
    assert effects[("slurm.resume", "node-08")] == 0
    assert [p.reason for p in engine.store.due(clock.now() + 1, 10, "pager")] == ["remediation_failed"]


def test_audit_verify_detects_a_changed_a_removed_and_a_reordered_record(tmp_path: Path) -> None:
    engine, _, _, _ = build(tmp_path)
    engine.submit(xid79("node-09"))
    Executor(engine).advance_due()
    engine.store.close()
    db = tmp_path / "alerts.db"
    config = tmp_path / "vigil.yaml"
    config.write_text(f"data_dir: {tmp_path}\nalerting:\n  db_path: {db}\n")
    cli = CliRunner()
    ok = cli.invoke(build_app(), ["audit", "verify", "-c", str(config)])
    assert ok.exit_code == 0, ok.output
    backup = db.read_bytes()

    def tampered(sql: str) -> str:
        db.write_bytes(backup)
        for suffix in ("-wal", "-shm"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)
        conn = sqlite3.connect(db)
        try:
            conn.executescript(sql)
            conn.commit()
        finally:
            conn.close()
        result = cli.invoke(build_app(), ["audit", "verify", "-c", str(config)])
        assert result.exit_code == 1
        return result.output

    changed = tampered("UPDATE audit_log SET record = replace(record, '\"action\"', '\"noaction\"') WHERE seq = 3")
    assert "broken at record 3" in changed and "changed" in changed
    removed = tampered("DELETE FROM audit_log WHERE seq = 2")
    assert "broken at record 3" in removed and "removed" in removed
    swapped = tampered(
        "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3;"
        "UPDATE audit_log SET seq = 3 WHERE seq = -1;"
    )
    assert "broken at record 2" in swapped
    records = int(ok.output.split("ok ", 1)[1].split()[0])  # "ok N records, head ..."
    truncated = tampered(f"DELETE FROM audit_log WHERE seq > {records - 2}")
    assert f"broken at record {records - 1}" in truncated and "newest records were removed" in truncated
    newest = tampered(f"DELETE FROM audit_log WHERE seq = {records}")
    assert f"broken at record {records}" in newest and "newest records were removed" in newest


def test_a_record_appended_after_the_newest_were_cut_off_does_not_hide_the_cut(tmp_path: Path) -> None:
    engine, _, _, _ = build(tmp_path)
    engine.submit(xid79("node-10"))
    Executor(engine).advance_due()
    store = engine.store
    last = store.audit_head()
    assert last is not None and last[0] >= 3
    conn = sqlite3.connect(tmp_path / "alerts.db")
    conn.execute("DELETE FROM audit_log WHERE seq >= ?", (last[0] - 1,))
    conn.commit()
    conn.close()
    store.audit(1.0, "vigil", "note", None, {"after": "the cut"})  # the chain goes on from the head
    result = verify_chain(store.audit_rows(), store.audit_head())
    assert not result.ok and result.bad_seq == last[0] + 1 and "removed or reordered" in result.reason
    assert verify_chain(store.audit_rows()).ok is False  # the chain alone sees the gap it left


def test_a_gpu_incident_folded_into_its_node_s_is_one_xid_episode_with_one_run(tmp_path: Path) -> None:
    # The closed loop drains the node; its idle GPUs then alert, and the burst folds the GPU's XID incident
    # into a node incident with a new key. That is the same failure: no second run, no "second XID
    # within a week" (which would open an RMA and page a person). A later, separate XID 48 is a repeat.
    engine, clock, _, _ = build(tmp_path)
    store = engine.store
    labels = {"alertname": "GpuXidFatal", "xid": "48", "host": "node-03", "gpu_index": "2"}

    def incident(key: str) -> Subject:
        values = {"key": key, "domain": "gpu:node-03/gpu2", "state": "open", "severity": "critical",
                  "priority": 0.0, "title": key, "opened_at": clock.now(), "updated_at": clock.now(), "detail": {}}
        incident_id = store.create_incident(values)
        return Subject(key, {**labels, "incident": str(incident_id)}, incident_id)

    gpu = incident("gpu-key")
    first = engine.submit(gpu)
    assert first is not None and first.runbook == "xid-48-double-bit-ecc"
    clock.advance(60)
    node = incident("node-key")
    store.update_incident(gpu.incident_id or 0, {"state": "merged", "merged_into": node.incident_id})
    assert engine.submit(node) is None  # the GPU incident's run goes on; the node incident starts none
    later = engine.propose(node)
    assert later is not None and later.runbook == "xid-48-double-bit-ecc"  # counted once: the first response
    clock.advance(86400)
    again = engine.submit(incident("next-day-key"))
    assert again is not None and again.runbook == "gpu-rma"  # a second episode on the same GPU within a week
