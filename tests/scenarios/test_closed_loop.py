"""The closed loop in one process on a fake clock: the remediation engine, configured exactly as
``vigil up --remediate`` configures it (demo runbooks, fleet aliases, guards), acts on the simulated
fleet; the fleet answers each request at its next tick and its telemetry feeds verification.

What the bus carries between the processes of ``vigil up`` is handed over directly here: XID log lines
become incidents (as analytics and alerting would make them), ``ActionRequest``s go to the simulator,
``ActionReport``s come back to the channel, telemetry and logs go to the verification watch.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from vigil.alerting.config import AlertingConfig
from vigil.alerting.runbooks.actions.fleet import MemoryChannel
from vigil.alerting.runbooks.config import RemediationConfig
from vigil.alerting.runbooks.engine import Remediation
from vigil.alerting.runbooks.executor import Executor
from vigil.alerting.runbooks.model import Subject
from vigil.alerting.runbooks.verify import TelemetryWatch
from vigil.alerting.runbooks.wiring import load_parts
from vigil.alerting.store import AlertStore
from vigil.collectors.sim import FleetSimulator, SimConfig

from vigil.cli.demo import with_remediation
from vigil.cli.report import Progress, recovery
from vigil.clock import FakeClock
from vigil.events import ActionRequest, FaultInjection

START = 1_767_225_600.0
FAULTS = [
    {"kind": "xid79", "at": 20, "duration": 25, "host": "node-05", "gpu_index": 6},
    {"kind": "xid48", "at": 50, "duration": 20, "host": "node-02", "gpu_index": 5},
]


class Loop(MemoryChannel):
    """The fleet and its pipeline, one tick a second; also the fleet actions' channel."""

    def __init__(self, sim: FleetSimulator, clock: FakeClock, watch: TelemetryWatch) -> None:
        super().__init__()
        self.sim, self.clock, self.watch = sim, clock, watch
        self.queued: list[ActionRequest] = []
        self.incidents: deque[Subject] = deque()
        self.truth: dict[str, FaultInjection] = {}
        self.progress = Progress()
        self.tick = 0

    def send(self, request: ActionRequest) -> None:
        super().send(request)
        self.queued.append(request)

    def report(self, request_id: str, timeout: float) -> Any:
        waited = 0.0
        while (found := super().report(request_id, 0.0)) is None and waited < timeout:
            self.step()  # the fleet answers at its next tick
            waited += 1.0
        return found

    def step(self) -> None:
        self.tick += 1
        self.clock.advance(START + self.tick - self.clock.now())
        requests, self.queued = self.queued, []
        out = self.sim.tick(self.clock.now(), requests)
        for event in (*out.telemetry, *out.logs):
            self.watch.observe(event)
        for report in out.reports:
            self.deliver(report)
        for fault in out.faults:
            self.truth[fault.fault_id] = fault
        for step in (s for batch in out.training for s in batch.steps()):
            if step.rank == 0:
                self.progress.add(step.step, step.step_time_s, step.ts)
        for line in out.logs:
            if line.kind == "xid" and line.code in (79, 48):  # GpuXidFatal, as analytics classifies them
                labels = {"alertname": "GpuXidFatal", "cluster": "default", "host": line.host,
                          "gpu_index": str(line.gpu_index), "xid": str(line.code), "incident": f"i{self.tick}"}
                self.incidents.append(Subject(f"incident-{self.tick}", labels))


def run(tmp_path: Path, execute: bool, seconds: int) -> tuple[Loop, Remediation]:
    sim_config = SimConfig(faults=FAULTS, reboot_time=20.0)
    section = with_remediation(AlertingConfig().model_dump(), sim_config, execute)["remediation"]
    config = RemediationConfig.model_validate(section)
    clock, watch = FakeClock(START), TelemetryWatch()
    loop = Loop(FleetSimulator(sim_config, START), clock, watch)
    engine = Remediation(load_parts(config, clock, telemetry=watch, channel=loop), AlertStore(tmp_path / "alerts.db"))
    executor = Executor(engine)
    while loop.tick < seconds:
        loop.step()
        while loop.incidents:
            engine.submit(loop.incidents.popleft())
        executor.advance_due()
    for fault in loop.sim.finish(clock.now()).faults:
        loop.truth[fault.fault_id] = fault
    return loop, engine


def test_xid79_and_xid48_are_drained_repaired_verified_and_returned_to_service_with_no_person(
    tmp_path: Path,
) -> None:
    loop, engine = run(tmp_path, execute=True, seconds=200)
    runs = {r.labels["xid"]: r for r in engine.store.runs()}
    assert {xid: r.state for xid, r in runs.items()} == {"79": "succeeded", "48": "succeeded"}
    assert engine.store.step_approvals(0.0) == []  # nobody was asked
    sent = [(r.action, r.target) for r in loop.sent]
    assert sent == [
        ("fleet.drain", "node-05"), ("fleet.requeue", "node-05"), ("fleet.reboot", "node-05"),
        ("fleet.drain", "node-02"), ("fleet.requeue", "node-02"), ("fleet.reset", "node-02"),
        ("fleet.resume", "node-05"), ("fleet.resume", "node-02"),
    ]
    rows = {f.kind: recovery(f) for f in loop.truth.values()}
    for kind, repaired_by in (("xid79", "fleet.reboot"), ("xid48", "fleet.reset")):
        row = rows[kind]
        assert row["remediated"] and row["repaired_by"] == repaired_by
        assert row["drained_at"] < row["repaired_at"] < row["returned_at"] == row["recovered_at"]
    # The reboot took its 20 s; verification held 60 s without an XID before the resume.
    xid79 = rows["xid79"]
    assert xid79["repaired_at"] - xid79["drained_at"] >= 20.0 and xid79["returned_at"] - xid79["drained_at"] >= 60.0
    kinds = [r.kind for r in engine.store.audit_rows()]
    assert kinds.count("verify") == 2 and kinds[0] == "plan"
    # The job left both nodes for the spares and runs there.
    assert {loop.sim.hosts[n] for n in loop.sim.job.placement.tolist()} >= {"node-08", "node-09"}


def test_the_same_seed_trains_more_with_remediation_than_with_plans_only(tmp_path: Path) -> None:
    acted, _ = run(tmp_path / "execute", execute=True, seconds=150)
    planned, engine = run(tmp_path / "dry", execute=False, seconds=150)
    assert planned.sent == [] and {r.state for r in engine.store.runs()} == {"planned"}
    end = START + 150
    with_robot, without = acted.progress.summary(end), planned.progress.summary(end)
    # Without the robot the job waits for each GPU to be fixed by hand (the faults' 25 s and 20 s);
    # with it the job restarts on the spares within seconds of each XID.
    assert with_robot["ettr"] > without["ettr"] + 0.1
    assert with_robot["restarts"] >= 1 and without["restarts"] >= 1
