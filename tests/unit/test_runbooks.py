"""Runbook validation (file, line, key), the planner's guards and the XID policy's ladder."""

from __future__ import annotations

from pathlib import Path

import pytest
from vigil.alerting.runbooks.actions.build import catalog_actions
from vigil.alerting.runbooks.config import GuardsConfig
from vigil.alerting.runbooks.loader import RunbookError, load_dir, load_text
from vigil.alerting.runbooks.model import Subject
from vigil.alerting.runbooks.planner import Acted, Approval, State, choose_runbook, plan
from vigil.alerting.runbooks.policy import XidPolicy

ACTIONS = catalog_actions()
GOOD = """\
name: ok
match: ['alertname="GpuXidFatal"']
steps:
  - name: drain
    action: node.drain
    params: {node: "{host}", reason: "incident {incident}"}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RunbookError) as caught:
        load_text(text, "rb.yaml", ACTIONS)
    return [str(p) for p in caught.value.problems]


def test_unknown_action_is_named_with_file_line_and_key() -> None:
    found = problems(GOOD.replace("node.drain", "slurm.drian"))
    assert found[0].startswith("rb.yaml:5: steps[0].action: unknown action 'slurm.drian'")


def test_bad_template_is_named_with_file_line_and_key() -> None:
    found = problems(GOOD.replace("incident {incident}", "{incident.__class__}"))
    assert found == [
        "rb.yaml:6: steps[0].params.reason: bad template: template field {incident.__class__} must be "
        "a plain name such as {host}"
    ]


def test_destructive_step_without_an_approval_guard_is_refused() -> None:
    text = GOOD + '  - name: reboot\n    action: node.reboot\n    params: {node: "{host}"}\n'
    found = problems(text)
    assert len(found) == 1 and found[0].startswith("rb.yaml:7: steps[1].guards.approval: node.reboot is destructive")
    guarded = load_text(text + "    guards: {approval: required}\n", "rb.yaml", ACTIONS)
    assert guarded.steps[1].guards.approval == "required"


def test_schema_errors_name_the_key_and_line() -> None:
    found = problems(GOOD.replace("    action: node.drain\n", "    action: node.drain\n    retry: 3\n"))
    assert found[0].startswith("rb.yaml:4: steps[0]: Additional properties are not allowed ('retry'")
    assert problems("name: x\nsteps: []\n")[0].startswith("rb.yaml:1: (top): 'match' is a required property")


def test_parameters_are_checked_against_the_actions_schema() -> None:
    found = problems(GOOD.replace('reason: "incident {incident}"', "reson: x"))
    assert any("steps[0].params" in p and "'reason' is a required property" in p for p in found)


def test_packaged_runbooks_and_policy_load(tmp_path: Path) -> None:
    runbooks = load_dir(None, ACTIONS)
    assert {"xid-79-fallen-off-bus", "xid-48-double-bit-ecc", "gpu-rma", "xid-application-error"} <= set(runbooks)
    XidPolicy.load(known=runbooks)
    (tmp_path / "x.yaml").write_text(GOOD)
    assert "ok" in load_dir(tmp_path, ACTIONS)


SUBJECT = Subject("k1", {"alertname": "GpuXidFatal", "xid": "79", "host": "node-3", "gpu_index": "2", "incident": "7"})


def xid79_plan(state: State, subject: Subject = SUBJECT) -> list[tuple[str, str]]:
    runbooks = load_dir(None, ACTIONS)
    runbook, _ = choose_runbook(subject, runbooks, XidPolicy.load(), {})
    assert runbook is not None
    made = plan(subject, runbook, state, ACTIONS, GuardsConfig(), "run1")
    return [(s.name, s.verdict) for s in made.steps]


def test_xid79_plan_drains_requeues_reboots_by_policy_then_resumes() -> None:
    assert xid79_plan(State(1000.0, 20)) == [("drain", "go"), ("requeue", "go"), ("reboot", "go"), ("resume", "go")]


def test_blast_radius_stops_at_five_percent_of_the_cluster() -> None:
    other = Acted("slurm.drain", "node-9", None, 900.0, "run0")
    assert xid79_plan(State(1000.0, 20, (other,)))[0] == ("drain", "approval")  # 1 of 20 = the 5% limit
    assert xid79_plan(State(1000.0, 40, (other,)))[0] == ("drain", "go")  # 2 of 40 allowed
    assert xid79_plan(State(2000.0, 20, (other,)))[0] == ("drain", "go")  # outside the 10-minute window
    approved = {"run1/steps/0": Approval("approved", "alice")}
    assert xid79_plan(State(1000.0, 20, (other,), approved))[0] == ("drain", "go")


def test_a_second_node_of_one_job_needs_a_person() -> None:
    subject = Subject("k2", {**SUBJECT.labels, "job_id": "42"})
    other = Acted("slurm.drain", "node-9", "42", 900.0, "run0")
    assert xid79_plan(State(1000.0, 1000, (other,)), subject)[0] == ("drain", "approval")


def test_auto_approval_allowance_and_cooldown() -> None:
    rebooted = Acted("node.reboot", "node-3", None, 100.0, "run0")
    steps = dict(xid79_plan(State(1000.0, 100, (rebooted,))))
    assert steps["reboot"] == "approval"  # the second reboot of node-3 within a day asks a person
    drained = Acted("slurm.drain", "node-3", None, 990.0, "run0")
    assert dict(xid79_plan(State(1000.0, 100, (drained,))))["drain"] == "approval"  # cool-down 5m


def test_missing_label_blocks_the_step_instead_of_guessing() -> None:
    subject = Subject("k3", {k: v for k, v in SUBJECT.labels.items() if k != "host"})
    assert xid79_plan(State(1000.0, 20), subject)[0] == ("drain", "blocked")


def test_xid_ladder_picks_the_rma_runbook_on_a_repeat() -> None:
    runbooks = load_dir(None, ACTIONS)
    policy = XidPolicy.load(known=runbooks)
    assert choose_runbook(SUBJECT, runbooks, policy, {7 * 86400.0: 1})[0].name == "xid-79-fallen-off-bus"  # type: ignore[union-attr]
    assert choose_runbook(SUBJECT, runbooks, policy, {7 * 86400.0: 2})[0].name == "gpu-rma"  # type: ignore[union-attr]
    app = Subject("k4", {"alertname": "GpuXidError", "xid": "31", "host": "n", "gpu_index": "0"})
    runbook, _ = choose_runbook(app, runbooks, policy, {})
    assert runbook is not None and runbook.name == "xid-application-error"
    assert plan(app, runbook, State(0.0, 1), ACTIONS, GuardsConfig(), "r").steps[0].verdict == "skip"  # no job_id
