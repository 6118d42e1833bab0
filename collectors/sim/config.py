"""The simulator's config section (``sim:`` in the Vigil config file)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from vigil.collectors.sim.faults import FAULT_KINDS

from vigil.config import Duration, FrozenModel, PositiveDuration


def host_name(index: int) -> str:
    return f"node-{index:02d}"


class FaultSpec(FrozenModel):
    """One planned fault. Targets left as None are picked deterministically from the seed."""

    kind: str
    at: Duration  # seconds after the simulator's start
    duration: PositiveDuration | None = None  # None: until the simulator stops
    host: str | None = None
    gpu_index: Annotated[int, Field(ge=0)] | None = None
    rank: Annotated[int, Field(ge=0)] | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS.names())})")
        return kind


class SimConfig(FrozenModel):
    nodes: Annotated[int, Field(ge=1, le=100)] = 8  # the nodes the training job runs on
    # Hot spares (node-08, node-09 by default) run preemptible filler work, so a job requeued off a
    # drained node lands on one at once; ``vigil up --remediate`` needs them to move ranks.
    spare_nodes: Annotated[int, Field(ge=0, le=100)] = 2
    gpus_per_node: Annotated[int, Field(ge=1, le=16)] = 8
    interval: PositiveDuration = 1.0
    seed: Annotated[int, Field(ge=0)] = 0  # numpy's generators take no negative seed
    cluster: str = "default"
    job_id: str = "job-0"
    # More than one tick per TelemetryBatch only pays for throughput benchmarks: it delays telemetry.
    ticks_per_batch: Annotated[int, Field(ge=1, le=10_000)] = 1
    base_step_time: PositiveDuration = 0.5
    # False: the job emits no TrainingSteps (the telemetry-throughput benchmark measures one stream).
    training: bool = True
    checkpoint_every: Annotated[int, Field(ge=1)] = 60  # steps between the job's checkpoints
    restart_cost: Duration = 15.0  # a restart: relaunch, load the checkpoint, NCCL init; no steps meanwhile
    reboot_time: PositiveDuration = 30.0  # a node rebooted by an action is dark this long
    gpu_reset_time: PositiveDuration = 3.0  # a GPU reset by an action is off the bus this long
    actions: bool = True  # obey ActionRequests from the actions topic (the simulated fleet's remediation)
    faults: list[FaultSpec] = Field(default_factory=list)
    # "demo": with no explicit faults, run the built-in demo schedule (see vigil.collectors.sim.schedule).
    schedule: Literal["demo", "none"] = "demo"

    @model_validator(mode="after")
    def _targets_exist(self) -> SimConfig:
        hosts = {host_name(i) for i in range(self.nodes + self.spare_nodes)}
        last = host_name(self.nodes + self.spare_nodes - 1)
        for i, spec in enumerate(self.faults):
            if spec.host is not None and spec.host not in hosts:
                raise ValueError(f"faults[{i}].host: no host {spec.host!r} (node-00..{last})")
            if spec.gpu_index is not None and spec.gpu_index >= self.gpus_per_node:
                raise ValueError(f"faults[{i}].gpu_index: {spec.gpu_index} >= gpus_per_node")
            if spec.rank is not None and spec.rank >= self.nodes * self.gpus_per_node:
                raise ValueError(f"faults[{i}].rank: {spec.rank} >= world size")
        return self
