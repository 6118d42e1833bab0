"""What ``vigil up`` adds to the user's config so remediation acts on the simulated fleet.

Remediation always runs in ``vigil up``: in dry-run mode (plans in the incidents' timelines and the
live view, nothing done) unless ``--remediate`` asks for execute mode. Unless the user's config
enables ``alerting.remediation`` itself, the demo's section is used:

- the scheduler-neutral aliases (``node.drain``, ``node.resume``, ``job.requeue``, ``job.restart``,
  ``job.checkpoint``) bound to the simulator's ``fleet.*`` actions, which travel over the actions
  topic (``fleet.enabled``);
- the packaged demo runbooks (``alerting/runbooks/demo/``): the shipped XID 79 and XID 48 runbooks
  with the fleet's reboot and GPU reset and holds scaled to a five-minute run;
- the blast radius counted over the simulator's real size (job nodes and spares) and opened to 30 %
  of it: 5 % of a ten-node fleet is less than one node, and the demo schedule takes three nodes
  out within five minutes; every other guard keeps its default;
- verification expecting the simulator's GPUs per node.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from vigil.collectors.sim.config import SimConfig

FLEET_ALIASES = {
    "node.drain": "fleet.drain",
    "node.resume": "fleet.resume",
    "job.requeue": "fleet.requeue",
    "job.restart": "fleet.restart",
    "job.checkpoint": "fleet.checkpoint",
}
DEMO_BLAST_RADIUS = 0.3
ROBOT = "vigil-up-remediation"  # the remediation receiver the demo adds


def demo_runbooks() -> Path:
    return Path(str(resources.files("vigil.alerting.runbooks").joinpath("demo")))


def with_remediation(alerting: dict[str, Any], sim: SimConfig, execute: bool) -> dict[str, Any]:
    """``alerting`` (a dump of the user's section) with remediation on (the demo's runbooks unless the
    user enabled their own section), executing with ``execute`` (``--remediate``) or in the user's
    mode, else dry-run; and a remediation receiver among the notifiers."""
    section = alerting.get("remediation") or {}
    if not section.get("enabled"):
        section = {
            "enabled": True,
            "runbooks_dir": str(demo_runbooks()),
            "aliases": dict(FLEET_ALIASES),
            "fleet": {"enabled": True, "timeout": 30.0},
            "verify": {"gpus_per_node": sim.gpus_per_node},
            "guards": {
                "blast_radius": {"cluster_nodes": sim.nodes + sim.spare_nodes, "max_fraction": DEMO_BLAST_RADIUS}
            },
            "mode": "dry_run",
        }
    if execute:  # --remediate; otherwise a section the user enabled keeps the mode they chose
        section = {**section, "mode": "execute"}
    notifiers = list(alerting.get("notifiers") or [])
    routed = [n for r in alerting.get("receivers") or [] for n in r.get("integrations") or []]
    if not any(n.get("type") == "remediation" for n in [*notifiers, *routed]):
        notifiers.append({"type": "remediation", "name": ROBOT})
    return {**alerting, "remediation": section, "notifiers": notifiers}
