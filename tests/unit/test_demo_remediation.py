"""What ``vigil up`` adds for remediation on the simulated fleet (``vigil/cli/demo.py``)."""

from __future__ import annotations

from vigil.alerting.config import AlertingConfig
from vigil.collectors.sim.config import SimConfig

from vigil.cli.demo import ROBOT, with_remediation


def test_the_demo_adds_one_named_robot_and_the_mode_asked_for() -> None:
    alerting = with_remediation(AlertingConfig().model_dump(), SimConfig(), execute=True)
    robots = [n for n in alerting["notifiers"] if n["type"] == "remediation"]
    assert robots == [{"type": "remediation", "name": ROBOT}]
    section = alerting["remediation"]
    assert section["mode"] == "execute" and section["aliases"]["node.drain"] == "fleet.drain"
    AlertingConfig.model_validate(alerting)  # what the run config's alerting section must pass


def test_a_robot_already_in_a_receiver_is_not_added_twice() -> None:
    mine = {"type": "remediation", "name": "my-robot"}
    given = {**AlertingConfig().model_dump(), "receivers": [{"name": "ops", "integrations": [mine]}]}
    alerting = with_remediation(given, SimConfig(), execute=False)
    assert not [n for n in alerting["notifiers"] if n["type"] == "remediation"]
    assert alerting["remediation"]["mode"] == "dry_run"


def test_a_section_the_user_enabled_keeps_its_mode_and_remediate_makes_it_execute() -> None:
    mine = {**AlertingConfig().model_dump()["remediation"], "enabled": True, "mode": "execute"}
    given = {**AlertingConfig().model_dump(), "remediation": mine}
    assert with_remediation(given, SimConfig(), execute=False)["remediation"] == mine  # not the demo's dry run
    planned = {**mine, "mode": "dry_run"}
    section = with_remediation({**given, "remediation": planned}, SimConfig(), execute=True)["remediation"]
    assert section == mine  # --remediate: execute, the user's runbooks and guards otherwise
