"""The fleet's failure domains: which rack and switch each node hangs off, and which nodes each job runs on.

Read from ``alerting.topology.file``::

    gpus_per_node: 8                 # default for nodes that do not say
    nodes:
      node-01: {rack: r1, switch: sw1, gpus: 8}
    racks:    {r2: [node-05, node-06]}          # or per rack / per switch, whichever is at hand
    switches: {sw2: [node-05, node-06]}
    jobs:     {job-0: [node-01, node-05]}       # or {job-0: {nodes: [...]}}

A node in two racks (or two switches) is an error naming the key. Without a file, alerts still name
their GPU, node and job through their labels; racks, switches and the nodes of a job need the file.

Why not the collectors' ``gpu_info`` series: they say which GPU is which (UUID, serial, PCI id), not
which rack or switch a node is cabled to nor which job runs where, and the alerting service does not
consume telemetry. A scheduler export (Slurm's ``squeue --json``, Kubernetes pod placement) is the
natural source of ``jobs``; the file is where it lands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from vigil.config import FrozenModel, load_yaml, validate

Name = Annotated[str, Field(min_length=1)]


class NodeSpec(FrozenModel):
    rack: Name | None = None
    switch: Name | None = None
    gpus: Annotated[int, Field(ge=0, le=1024)] | None = None


class JobSpec(FrozenModel):
    nodes: list[Name]


class TopologyFile(FrozenModel):
    gpus_per_node: Annotated[int, Field(ge=0, le=1024)] = 8
    nodes: dict[Name, NodeSpec] = Field(default_factory=dict)
    racks: dict[Name, list[Name]] = Field(default_factory=dict)
    switches: dict[Name, list[Name]] = Field(default_factory=dict)
    jobs: dict[Name, JobSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _job_lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("jobs"), dict):
            jobs = {k: ({"nodes": v} if isinstance(v, list) else v) for k, v in data["jobs"].items()}
            return {**data, "jobs": jobs}
        return data

    @model_validator(mode="after")
    def _one_place_per_node(self) -> TopologyFile:
        for kind in ("rack", "switch"):
            owner: dict[str, str] = {n: getattr(s, kind) for n, s in self.nodes.items() if getattr(s, kind)}
            for group, members in getattr(self, f"{kind}s" if kind == "rack" else "switches").items():
                for node in members:
                    if owner.get(node, group) != group:
                        raise ValueError(f"node {node} is in {kind} {owner[node]} and {kind} {group}")
                    owner[node] = group
        return self


@dataclass(frozen=True, slots=True)
class Topology:
    """Lookups the correlation and priority use; empty when no file is given."""

    gpus_per_node: int = 8
    rack: Mapping[str, str] = field(default_factory=dict)  # node -> rack
    switch: Mapping[str, str] = field(default_factory=dict)  # node -> switch
    gpus: Mapping[str, int] = field(default_factory=dict)  # node -> GPUs, where the file says
    jobs_of: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # node -> jobs
    nodes_of: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # job -> nodes
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)  # "rack:r1" -> its nodes

    def node_gpus(self, node: str) -> int:
        return self.gpus.get(node, self.gpus_per_node)

    def job_gpus(self, job: str) -> int:
        return sum(self.node_gpus(n) for n in self.nodes_of.get(job, ()))

    @classmethod
    def from_spec(cls, spec: TopologyFile) -> Topology:
        rack = {n: s.rack for n, s in spec.nodes.items() if s.rack}
        switch = {n: s.switch for n, s in spec.nodes.items() if s.switch}
        rack |= {n: r for r, nodes in spec.racks.items() for n in nodes}
        switch |= {n: s for s, nodes in spec.switches.items() for n in nodes}
        jobs_of: dict[str, list[str]] = {}
        for job, js in spec.jobs.items():
            for node in js.nodes:
                jobs_of.setdefault(node, []).append(job)
        members: dict[str, set[str]] = {}
        for kind, owner in (("rack", rack), ("switch", switch)):
            for node, group in owner.items():
                members.setdefault(f"{kind}:{group}", set()).add(node)
        for job, js in spec.jobs.items():
            members[f"job:{job}"] = set(js.nodes)
        return cls(
            gpus_per_node=spec.gpus_per_node,
            rack=rack,
            switch=switch,
            gpus={n: s.gpus for n, s in spec.nodes.items() if s.gpus is not None},
            jobs_of={n: tuple(j) for n, j in jobs_of.items()},
            nodes_of={j: tuple(js.nodes) for j, js in spec.jobs.items()},
            members={k: frozenset(v) for k, v in members.items()},
        )


def load_topology(path: Path | None, key: str = "alerting.topology.file") -> Topology:
    """The topology in ``path`` (None: an empty one); a bad file raises ConfigError naming the key."""
    if path is None:
        return Topology()
    return Topology.from_spec(validate(TopologyFile, load_yaml(path), key))
