"""``canary:``: where the probe definitions are and how the canary service runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from vigil.config import FrozenModel, PositiveDuration


class SimulatedServingConfig(FrozenModel):
    """``vigil up`` only: a simulated model (``sim-classifier``) served on the first ``nodes`` simulated
    hosts and probed per node by the canary. A simulator fault of kind ``sdc`` on one of them (in
    ``sim.faults``) makes that node answer wrongly while its telemetry stays clean."""

    enabled: bool = True
    nodes: Annotated[int, Field(ge=2, le=64)] = 4
    interval: PositiveDuration = 2.0  # one probe round every interval
    window: Annotated[int, Field(ge=2, le=100)] = 5  # rounds per judgement


class CanaryConfig(FrozenModel):
    # Probe files and folders (``*.yaml``; golden sets as ``*.golden.yaml`` beside them). Each is
    # validated at start, errors naming file, line and key.
    probes: list[Path] = Field(default_factory=list)
    group: Annotated[str, Field(min_length=1)] = "vigil-canary"  # its consumer group (the remediation topic)
    workers: Annotated[int, Field(ge=1, le=64)] = 4  # rounds of different probes run in parallel
    buffer: Annotated[int, Field(ge=100, le=1_000_000)] = 10_000  # results kept while the broker is away
    poll: Annotated[PositiveDuration, Field(le=10)] = 0.2  # how long a step waits on the remediation topic
    simulated: SimulatedServingConfig = Field(default_factory=SimulatedServingConfig)

    @field_validator("probes")
    @classmethod
    def _loadable(cls, paths: list[Path]) -> list[Path]:
        from vigil.alerting.canary.spec import ProbeError, load_paths

        try:
            load_paths(paths)
        except ProbeError as exc:  # each line names file, line and key; pydantic prefixes canary.probes
            raise ValueError(str(exc)) from None
        return paths
