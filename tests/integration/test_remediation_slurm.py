"""Acceptance against a REAL single-node Slurm on loopback: an XID 79 incident drains the right node with
a reason naming the incident, requeues the job, requests the reboot, and after verification resumes the
node (and the requeued job runs again); a resumed executor does not drain or requeue a second time."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from vigil.alerting.runbooks.actions.build import build_actions, catalog_actions
from vigil.alerting.runbooks.config import BlastRadiusConfig, GuardsConfig, HooksConfig, RemediationConfig, SlurmConfig
from vigil.alerting.runbooks.engine import Parts, Remediation
from vigil.alerting.runbooks.executor import Executor
from vigil.alerting.runbooks.loader import load_dir
from vigil.alerting.runbooks.model import Subject
from vigil.alerting.runbooks.policy import XidPolicy
from vigil.alerting.runbooks.verify import TelemetryWatch
from vigil.alerting.store import AlertStore

from tests.slurm import NODE, Slurm, slurm_cluster
from vigil.clock import FakeClock
from vigil.events import TelemetryBatch

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm() -> Slurm:  # type: ignore[misc]
    with slurm_cluster() as cluster:
        yield cluster


def test_xid79_drains_requeues_and_after_verify_resumes_the_node(slurm: Slurm, tmp_path: Path) -> None:
    argv = ("sbatch", "--parsable", "--requeue", "--gres=gpu:2", "-J", "train", "-o", "/dev/null")
    argv = (*argv, "--wrap", "sleep 600")
    job = slurm.run(*argv).strip()
    slurm.wait_for(lambda: "JobState=RUNNING" in slurm.job(job))
    reboots = tmp_path / "reboots"
    config = RemediationConfig(
        enabled=True,
        mode="execute",
        slurm=SlurmConfig(conf=slurm.conf),
        hooks=HooksConfig(reboot_command=["sh", "-c", f"echo {{node}} >> {reboots}"]),
        guards=GuardsConfig(blast_radius=BlastRadiusConfig(cluster_nodes=1)),
    )
    clock = FakeClock()
    watch = TelemetryWatch()
    runbooks = load_dir(None, catalog_actions())
    parts = Parts(config, runbooks, XidPolicy.load(known=runbooks), build_actions(config, clock), clock, watch)
    engine = Remediation(parts, AlertStore(tmp_path / "alerts.db"))
    labels = {"alertname": "GpuXidFatal", "xid": "79", "host": NODE, "gpu_index": "3", "incident": "42"}
    made = engine.submit(Subject("incident-42", labels, None))
    assert made is not None and made.runbook == "xid-79-fallen-off-bus"
    for _ in range(20):  # a step whose effect Slurm shows a moment later is retried (fake time, real Slurm)
        Executor(engine).advance_due()
        if engine.store.runs()[0].state == "verifying":
            break
        clock.advance(6)
        time.sleep(0.5)

    node = slurm.node()
    steps = [(s.name, s.state, s.result) for s in engine.store.steps(made.run_id)]
    assert [s[1] for s in steps] == ["succeeded", "succeeded", "succeeded", "pending"], steps
    assert [s.attempts for s in engine.store.steps(made.run_id)][:3] in ([1, 1, 1], [1, 2, 1])
    assert re.search(r"State=\S*DRAIN", node), (engine.store.runs()[0].state, engine.store.runs()[0].detail, steps[:2])
    assert "Reason=vigil incident 42: XID 79 on GPU 3" in node
    job_now = slurm.job(job)
    assert "Restarts=1" in job_now and f"Comment=vigil:{made.run_id}/steps/1:restarts=0" in job_now
    assert reboots.read_text().split() == [NODE]
    run = engine.store.runs()[0]
    assert run.state == "verifying"

    # A second executor (a restart) finds nothing left to do before verification: no second drain or requeue.
    Executor(Remediation(parts, AlertStore(tmp_path / "alerts.db"))).advance_due()
    assert "Restarts=1" in slurm.job(job) and reboots.read_text().split() == [NODE]

    series = tuple(f'gpu_power_watts{{gpu_index="{g}"}}' for g in range(8))
    for _ in range(12):  # every GPU reports and stays quiet through the 5-minute hold
        clock.advance(30)
        watch.observe(TelemetryBatch(NODE, "c", np.array([clock.now()]), series, np.ones((1, 8))))
        Executor(engine).advance_due()
    assert engine.store.run(run.id).state == "succeeded"  # type: ignore[union-attr]
    assert not re.search(r"State=\S*DRAIN", slurm.node())
    assert re.search(r"JobState=(PENDING|RUNNING)", slurm.job(job))  # requeued, not lost
    kinds = [r.kind for r in engine.store.audit_rows()]
    assert kinds[0] == "plan" and kinds.count("action") == 4 and "verify" in kinds
