"""``alerting.remediation``: the mode, where runbooks come from, the guards, and how actions reach the cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from vigil.config import Duration, FrozenModel, PositiveDuration
from vigil.secret import Secret

DEFAULT_COUNTERS = ("gpu_ecc_dbe_volatile_total", "gpu_remapped_rows", "gpu_row_remap_failure")


class BlastRadiusConfig(FrozenModel):
    """The circuit breaker: within ``window``, the robot changes at most ``max_fraction`` of the cluster's
    nodes (at least one) and ``max_per_job`` nodes of one job; beyond that it stops and asks a person."""

    max_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    window: PositiveDuration = 600.0
    max_per_job: Annotated[int, Field(ge=1)] = 1
    cluster_nodes: Annotated[int, Field(ge=1)] | None = None  # None: the nodes seen in telemetry


class RateLimit(FrozenModel):
    max: Annotated[int, Field(ge=1)]
    window: PositiveDuration


def _default_cooldowns() -> dict[str, float]:
    return {"node.reboot": 3600.0, "gpu.reset": 600.0, "slurm.drain": 300.0, "kubernetes.drain": 300.0}


class GuardsConfig(FrozenModel):
    blast_radius: BlastRadiusConfig = Field(default_factory=BlastRadiusConfig)
    # per registered action, over the whole cluster: {"gpu.reset": {max: 10, window: 1h}}
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    # per registered action and node: no second use on the same node within this time without a person
    cooldowns: dict[str, Duration] = Field(default_factory=_default_cooldowns)
    approval_ttl: PositiveDuration = 86400.0  # an unanswered approval request expires


class SlurmConfig(FrozenModel):
    scontrol: str = "scontrol"
    scancel: str = "scancel"
    conf: Path | None = None  # SLURM_CONF for the commands
    timeout: PositiveDuration = 15.0


class KubernetesConfig(FrozenModel):
    enabled: bool = False
    kubeconfig: Path | None = None  # None: in-cluster service account
    host: str | None = None  # an API server URL without credentials (tests)
    taint_key: str = "vigil.io/gpu-unhealthy"
    drain_deadline: PositiveDuration = 300.0


class GpuConfig(FrozenModel):
    nvidia_smi: str = "nvidia-smi"
    prefix: list[str] = Field(default_factory=list)  # how to reach the node: ["ssh", "{node}"]; []: here


class HooksConfig(FrozenModel):
    """Where the actions that leave the cluster's scheduler go; an unset hook leaves its action out."""

    reboot_command: list[str] | None = None  # templates over the parameters: ["ipmitool", ..., "{node}", ...]
    reboot_url: Secret | None = None
    rma_url: Secret | None = None
    owner_url: Secret | None = None
    webhook_url: Secret | None = None
    rollback_url: Secret | None = None
    serving_url: Secret | None = None
    timeout: PositiveDuration = 10.0


class VerifyConfig(FrozenModel):
    gpus_per_node: Annotated[int, Field(ge=1)] = 8
    watch: bool = True  # consume telemetry and logs for the nodes under verification


class FleetConfig(FrozenModel):
    enabled: bool = False  # fleet.* actions: ActionRequest / ActionReport over the bus
    timeout: PositiveDuration = 60.0


class ModelServerConfig(FrozenModel):
    """A model server remediation may act on (``mlserver.rollback``), by the name probes give it."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    repository: Path | None = None  # its model repository folder (MLServer's model_repository_root)
    retired: Path | None = None  # where rolled-back versions are moved: outside the repository


class ServingConfig(FrozenModel):
    servers: dict[str, ModelServerConfig] = Field(default_factory=dict)
    # the OIP v2 server on each serving node, {node} filled in: oip.unload / oip.load; None leaves them out
    node_url: Annotated[str, Field(pattern=r"^https?://.*\{node\}")] | None = None
    timeout: PositiveDuration = 30.0


class RemediationConfig(FrozenModel):
    enabled: bool = False
    mode: Literal["dry_run", "execute"] = "dry_run"
    runbooks_dir: Path | None = None  # the user's runbooks, beside (or replacing by name) the packaged ones
    xid_policy: Path | None = None  # None: vigil/catalogs/xid_policy.yaml
    aliases: dict[str, str] = Field(default_factory=dict)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    page: list[str] = Field(default_factory=list)  # notifiers that page a person; []: every other notifier
    interval: Annotated[PositiveDuration, Field(le=60)] = 0.5  # how often the runner looks at due runs
    retry_backoff: PositiveDuration = 5.0  # first wait after a retryable step failure (doubles, cap 5 min)
