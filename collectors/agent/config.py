"""The agent's config section (``agent:`` in the Vigil config file).

```yaml
agent:
  host: gpu-node-17            # default: socket.gethostname()
  tick: 1s                     # the scheduler's base tick; one TelemetryBatch per tick
  collectors:
    nvml: {interval: 1s}
    host: {interval: 10s}
    smart: {interval: 5m, jitter: 30s, timeout: 60s, devices: [/dev/nvme0n1]}
  buffer: {memory_bytes: 16777216, spill_max_bytes: 1073741824, spill_after: 5s}
  metrics_address: 0.0.0.0
  metrics_port: 9479
```

A collector's entry holds the runner's keys (``enabled``, ``interval``, ``jitter``, ``timeout``,
``module``); every other key is the collector's own option, validated by its ``create()`` with the
prefix ``agent.collectors.<name>`` when the agent starts.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from vigil.collectors.registry import COLLECTORS

from vigil.config import Duration, FrozenModel, PositiveDuration

RUNNER_KEYS = frozenset({"enabled", "interval", "jitter", "timeout", "module"})
MiB = 1024 * 1024


class CollectorSettings(BaseModel):
    """One collector's entry. Unknown keys are kept (``options``): they belong to the collector."""

    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)
    enabled: bool = True
    interval: PositiveDuration = 1.0
    # Each run starts up to ``jitter`` after its slot (uniformly drawn per run, no drift), so a fleet
    # whose ticks are aligned to the wall clock does not hit a shared resource at the same instant.
    jitter: Duration = 0.0
    # A run still going after this long is abandoned (counted as error="timeout"); None: the interval.
    timeout: PositiveDuration | None = None
    # A site-specific collector: this module's ``create(options, context)`` instead of the registry's.
    module: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def run_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.interval


class BufferConfig(FrozenModel):
    """Where records wait while the broker is away: memory first, then segment files on disk."""

    # 16 MiB is ~20 minutes of an 8-GPU node's telemetry, and keeps the agent's RSS near 100 MB when full.
    memory_bytes: Annotated[int, Field(ge=65_536)] = 16 * MiB
    memory_records: Annotated[int, Field(ge=1)] = 50_000
    spill_dir: Path | None = None  # None: <data_dir>/agent/spill
    spill_max_bytes: Annotated[int, Field(ge=0)] = 1024 * MiB  # 0: never spill (drop when memory is full)
    segment_bytes: Annotated[int, Field(ge=65_536)] = 16 * MiB
    # A record not acknowledged this long after it was queued is written to the spill even while
    # memory has room, so a SIGKILL loses at most the last few seconds, not a whole outage. At least
    # 1 s: a healthy broker acknowledges in milliseconds, and each move opens a segment file.
    spill_after: Annotated[PositiveDuration, Field(ge=1, le=3600)] = 5.0


class AgentConfig(FrozenModel):
    host: Annotated[str, Field(min_length=1)] = Field(default_factory=socket.gethostname)
    tick: PositiveDuration = 1.0
    # How long a tick waits for its collectors before publishing the merged batch; a collector that
    # answers later (but within its timeout) is published as its own batch. None: half the tick.
    batch_wait: Duration | None = None
    collectors: dict[str, CollectorSettings] = Field(default_factory=lambda: {"host": CollectorSettings()})
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    metrics_address: str = "127.0.0.1"  # 0.0.0.0 in a DaemonSet, so Prometheus and probes reach it
    metrics_port: Annotated[int, Field(ge=-1, le=65535)] = 9479  # 0: any free port, -1: no endpoint
    shutdown_timeout: Duration = 10.0  # SIGTERM: how long to try delivering before spilling the rest
    # The longest wait between two connection attempts to the broker.
    reconnect_backoff_max: Annotated[PositiveDuration, Field(le=300)] = 5.0
    create_topics: bool = True  # on connecting, create the telemetry and logs topics if missing

    @property
    def wait(self) -> float:
        return self.batch_wait if self.batch_wait is not None else self.tick / 2

    def enabled(self) -> dict[str, CollectorSettings]:
        return {name: spec for name, spec in sorted(self.collectors.items()) if spec.enabled}

    @model_validator(mode="after")
    def _check(self) -> AgentConfig:
        errors: list[InitErrorDetails] = []

        def error(loc: tuple[str, ...], message: str, value: object) -> None:
            errors.append(InitErrorDetails(type=PydanticCustomError("agent", message), loc=loc, input=value))

        if self.batch_wait is not None and not 0 < self.batch_wait < self.tick:
            error(("batch_wait",), "must be positive and shorter than the tick", self.batch_wait)
        for name, spec in self.collectors.items():
            where = ("collectors", name)
            if spec.module is None and name not in COLLECTORS:
                known = ", ".join(sorted(COLLECTORS))
                error(where, f"unknown collector (known: {known}; or give its module)", name)
            if spec.interval < self.tick:
                error((*where, "interval"), "shorter than agent.tick (the scheduler runs once a tick)", spec.interval)
            if spec.jitter >= spec.interval:
                error((*where, "jitter"), "must be shorter than the interval", spec.jitter)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self
