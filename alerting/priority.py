"""Priority: GPU-hours at risk = GPUs the incident takes out x expected hours until they work again.

GPUs at risk are those of the affected job(s) when the incident names or implies one (a GPU fault
stalls its whole synchronous job), else those of the affected nodes (a GPU or node fault idles the
node while it is drained or reset). Hours come from the recovery action of the worst member alert:
an XID's from the XID catalog, others' from ``vigil/catalogs/incidents.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from vigil.alerting.topology import Topology

from vigil.config import safe_load_bounded
from vigil.errors import ConfigError
from vigil.xid import XidCatalog


@dataclass(frozen=True, slots=True)
class RecoveryCatalog:
    hours: Mapping[str, float]  # recovery action -> hours
    actions: Mapping[str, str]  # alertname -> recovery action
    default_action: str
    inhibit_rules: tuple[Mapping[str, Any], ...]
    xid: XidCatalog

    @classmethod
    def load(cls) -> RecoveryCatalog:
        data = safe_load_bounded(resources.files("vigil").joinpath("catalogs/incidents.yaml").read_text())
        hours = {str(k): float(v) for k, v in data["recovery_hours"].items()}
        actions = {str(k): str(v) for k, v in data["alerts"].items()}
        for name, action in actions.items():
            if action not in hours:
                raise ConfigError(f"incidents catalog: alerts.{name}: unknown recovery action {action!r}")
        return cls(hours, actions, str(data["default_action"]), tuple(data["inhibit_rules"]), XidCatalog.load())

    def recovery_hours(self, labels: Mapping[str, str]) -> float:
        name = labels.get("alertname", "")
        xid = labels.get("xid", "")
        if xid.isdigit() and name.startswith("GpuXid"):
            action = self.xid[int(xid)].action if int(xid) in self.xid else self.default_action
        else:
            action = self.actions.get(name, self.default_action)
        return self.hours.get(action, self.hours.get(self.default_action, 0.5))


def gpus_at_risk(scopes: Iterable[Mapping[str, str]], topology: Topology) -> tuple[int, list[str]]:
    """GPUs the alerts put at risk, and the jobs or nodes they were counted from."""
    jobs: set[str] = set()
    nodes: set[str] = set()
    for scope in scopes:
        if scope.get("job_id"):
            jobs.add(scope["job_id"])
        if scope.get("host"):
            nodes.add(scope["host"])
    counted = [j for j in sorted(jobs) if j in topology.nodes_of]
    if counted:
        return sum(topology.job_gpus(j) for j in counted), [f"job:{j}" for j in counted]
    if nodes:
        return sum(topology.node_gpus(n) for n in nodes), [f"node:{n}" for n in sorted(nodes)]
    return (topology.gpus_per_node if jobs else 0), [f"job:{j}" for j in sorted(jobs)]


def priority(scopes: list[Mapping[str, str]], topology: Topology, catalog: RecoveryCatalog) -> dict[str, Any]:
    """``{"priority": GPU-hours, "gpus": n, "hours": h, "counted": [...]}`` for an incident's alerts."""
    gpus, counted = gpus_at_risk(scopes, topology)
    hours = max((catalog.recovery_hours(s) for s in scopes), default=0.0)
    return {"priority": round(gpus * hours, 2), "gpus": gpus, "hours": hours, "counted": counted}
