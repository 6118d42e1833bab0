"""Every message type that goes on a topic, and nothing else.

Each type carries ``SCHEMA_VERSION``; a breaking change gets a new topic suffix (``.v2``), never a
reused field. Times are float epoch seconds (UTC). ``TelemetryBatch`` is columnar: one host's
series for one or more ticks as a 2-D float array, so the hot path never builds an object per
sample. Series are named by canonical keys, ``metric{label="value",...}`` with sorted labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

Decision = Literal["firing", "resolved"]
Severity = Literal["critical", "warning", "info"]


def series_key(metric: str, labels: Mapping[str, str] | None = None) -> str:
    """The canonical series name: ``metric{a="1",b="x"}`` with labels sorted by name."""
    if not labels:
        return metric
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{metric}{{{inner}}}"


# One ``name="value"`` (or ``name=value``) pair: a quoted value may hold commas, ``=``, braces and spaces.
_LABEL = re.compile(r'\s*([^,="]*[^,="\s])\s*=\s*(?:"([^"]*)"|([^,]*))')


def parse_series_key(key: str) -> tuple[str, dict[str, str]]:
    """Inverse of :func:`series_key`. A quoted label value may hold commas, ``=``, braces and spaces
    (a scraped label, or a sink's escaping test); none holds ``"``, which :func:`series_key` does not
    escape (Vigil's collectors replace it)."""
    if "{" not in key:
        return key, {}
    metric, _, rest = key.partition("{")
    inner = rest[:-1] if rest.endswith("}") else rest
    labels: dict[str, str] = {}
    for match in _LABEL.finditer(inner):
        quoted, bare = match.group(2), match.group(3)
        labels[match.group(1)] = quoted if quoted is not None else bare.strip().strip('"')
    return metric, labels


@dataclass(frozen=True, slots=True, eq=False)
class TelemetryBatch:
    """One host's samples: ``values[t, i]`` is series ``series[i]`` at time ``ts[t]``."""

    SCHEMA_VERSION: ClassVar[int] = 1
    host: str
    cluster: str
    ts: FloatArray
    series: tuple[str, ...]
    values: FloatArray

    @property
    def sample_count(self) -> int:
        return int(self.values.size)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A parsed kernel or driver log line (XID, SXID, MCE, PCIe AER, fallen off the bus)."""

    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    host: str
    cluster: str
    kind: str  # xid | sxid | mce | aer | fallen_off_bus | nccl
    code: int | None
    raw: str
    gpu_pci: str | None = None
    gpu_uuid: str | None = None
    gpu_index: int | None = None
    source: str = "kmsg"


@dataclass(frozen=True, slots=True)
class TrainingStep:
    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    job_id: str
    rank: int
    host: str
    step: int
    loss: float
    step_time_s: float
    gpu_index: int | None = None
    compute_time_s: float | None = None
    tokens_per_s: float | None = None
    grad_norm: float | None = None
    learning_rate: float | None = None
    cluster: str = "default"
    samples_per_s: float | None = None  # throughput for jobs without tokens (images, audio clips)


@dataclass(frozen=True, slots=True, eq=False)
class TrainingStepBatch:
    """One job's steps in columns (like ``TelemetryBatch``): row ``i`` is rank ``rank[i]``'s step ``step[i]``.

    A trainer's (or a scrape's, or the simulator's) steps of one wake-up travel as one message, so the
    training topic costs one record per job per flush instead of one per rank and step. Hosts are a
    small table (``hosts``) indexed by ``host_index``; ``gpu_index`` is -1 where unknown, and the
    optional measures are NaN where not reported (``TrainingStep``'s None).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    job_id: str
    cluster: str
    hosts: tuple[str, ...]
    ts: FloatArray
    rank: IntArray
    step: IntArray
    host_index: IntArray
    gpu_index: IntArray
    loss: FloatArray
    step_time_s: FloatArray
    compute_time_s: FloatArray
    tokens_per_s: FloatArray
    samples_per_s: FloatArray
    grad_norm: FloatArray
    learning_rate: FloatArray

    INTS: ClassVar[tuple[str, ...]] = ("rank", "step", "host_index", "gpu_index")
    FLOATS: ClassVar[tuple[str, ...]] = (
        "loss",
        "step_time_s",
        "compute_time_s",
        "tokens_per_s",
        "samples_per_s",
        "grad_norm",
        "learning_rate",
    )

    @property
    def rows(self) -> int:
        return int(self.ts.size)

    def steps(self) -> list[TrainingStep]:
        """The rows as single ``TrainingStep`` events (for readers of one step at a time, and tests)."""

        def opt(values: FloatArray, i: int) -> float | None:
            value = float(values[i])
            return None if value != value else value

        return [
            TrainingStep(
                ts=float(self.ts[i]),
                job_id=self.job_id,
                rank=int(self.rank[i]),
                host=self.hosts[int(self.host_index[i])],
                step=int(self.step[i]),
                loss=float(self.loss[i]),
                step_time_s=float(self.step_time_s[i]),
                gpu_index=None if self.gpu_index[i] < 0 else int(self.gpu_index[i]),
                compute_time_s=opt(self.compute_time_s, i),
                tokens_per_s=opt(self.tokens_per_s, i),
                grad_norm=opt(self.grad_norm, i),
                learning_rate=opt(self.learning_rate, i),
                cluster=self.cluster,
                samples_per_s=opt(self.samples_per_s, i),
            )
            for i in range(self.rows)
        ]

    @classmethod
    def concat(cls, batches: list[TrainingStepBatch]) -> TrainingStepBatch:
        """Batches of one job (and one host table) as one, rows in order."""
        first = batches[0]
        if len(batches) == 1:
            return first
        columns = {n: np.concatenate([getattr(b, n) for b in batches]) for n in ("ts", *cls.INTS, *cls.FLOATS)}
        return cls(job_id=first.job_id, cluster=first.cluster, hosts=first.hosts, **columns)

    @classmethod
    def from_steps(cls, steps: list[TrainingStep]) -> TrainingStepBatch:
        """The steps of one job (``steps[0]``'s job and cluster) as one batch, in the order given."""
        hosts: dict[str, int] = {}
        host_index = [hosts.setdefault(s.host, len(hosts)) for s in steps]

        def floats(name: str) -> FloatArray:
            values = [getattr(s, name) for s in steps]
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            job_id=steps[0].job_id,
            cluster=steps[0].cluster,
            hosts=tuple(hosts),
            ts=np.array([s.ts for s in steps], dtype=np.float64),
            rank=np.array([s.rank for s in steps], dtype=np.int64),
            step=np.array([s.step for s in steps], dtype=np.int64),
            host_index=np.array(host_index, dtype=np.int64),
            gpu_index=np.array([-1 if s.gpu_index is None else s.gpu_index for s in steps], dtype=np.int64),
            **{name: floats(name) for name in cls.FLOATS},
        )


@dataclass(frozen=True, slots=True)
class Detection:
    """A detector's decision about one series or entity: it started firing, or it resolved."""

    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    detector: str
    series: str
    labels: Mapping[str, str]
    score: float
    decision: Decision
    severity: Severity
    reason: Mapping[str, Any]
    window_start: float
    window_end: float
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Prediction:
    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    predictor: str
    entity: str
    kind: str  # disk | gpu | node
    probability: float
    horizon_s: float
    labels: Mapping[str, str]
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Alert:
    """Labels identify an alert (its fingerprint is derived from them); annotations describe it."""

    SCHEMA_VERSION: ClassVar[int] = 1
    fingerprint: str
    status: Decision
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None
    severity: Severity
    recommended_action: str = ""
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ProbeItem:
    """One golden item's outcome in a canary round: passed or not, why, and the answer as received."""

    id: str
    ok: bool
    latency_s: float  # request to full answer (to the deadline for one that never came)
    reason: str = ""  # why it failed: "expected label 3, got 7", "timeout after 5s", "malformed JSON: ..."
    answer: str = ""  # what the model answered (cut to a few hundred characters)
    score: float | None = None  # the checker's measure, where it has one (similarity, absolute error)
    ttft_s: float | None = None  # time to first token (streamed OpenAI-compatible requests)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One canary round against one target: every golden item sent once, checked, and timed.

    ``target`` (the key) names the probe and the arm it hit (``digits@v2``, ``sim-classifier@node-03``);
    ``version`` is the model version that answered (read from the answer where the protocol says it),
    ``node`` the serving node for a per-node probe. ``ok`` is false when any item failed or the target
    was not usable at all (``detail`` then says why: not ready, timeout, malformed answer). ``quality``
    is the share of items that passed, ``latency_s`` the median item latency, ``ttft_s`` the median
    time to first token of streamed items.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    target: str
    model: str
    ok: bool
    latency_s: float
    quality: float | None
    detail: str = ""
    probe: str = ""
    version: str = ""
    node: str = ""
    protocol: str = ""
    round: int = 0
    passed: int = 0
    total: int = 0
    ttft_s: float | None = None
    trigger: str = "schedule"  # schedule | remediation | manual
    items: tuple[ProbeItem, ...] = ()


@dataclass(frozen=True, slots=True)
class StepState:
    name: str
    state: str  # pending | running | succeeded | failed | skipped
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RemediationRun:
    """A runbook run's state after each change (alerting publishes it; key = run id). ``fingerprint``
    is the incident's key (its dedup key); ``state`` is planned, running, waiting_approval, verifying,
    succeeded, failed, escalated or stopped; ``mode`` dry_run (a plan only) or execute."""

    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    run_id: str
    runbook: str
    fingerprint: str
    steps: tuple[StepState, ...]
    reason: str
    actor: str
    state: str = ""
    mode: str = "dry_run"
    incident_id: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """An action for an executor outside the alerting process (the simulated fleet obeys these; a node
    agent could), on the actions topic keyed by ``target`` (the host). ``request_id`` is the step's
    idempotency key: an executor that sees it twice acts once and reports the first outcome again."""

    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    request_id: str
    action: str  # node.drain, node.resume, gpu.reset, node.reboot, job.requeue, job.restart, ...
    target: str  # the host it acts on
    params: Mapping[str, Any]
    run_id: str = ""


@dataclass(frozen=True, slots=True)
class ActionReport:
    """An executor's answer to an ``ActionRequest`` (actions_reports topic, key = request id).
    ``status``: done, already_done (nothing to do: idempotent repeat), failed (retrying may help)
    or rejected (it never will); ``state`` is what the executor sees afterwards ({"drained": true})."""

    SCHEMA_VERSION: ClassVar[int] = 1
    ts: float
    request_id: str
    action: str
    target: str
    status: Literal["done", "already_done", "failed", "rejected"]
    detail: str = ""
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FaultInjection:
    """Ground truth from the simulator: what was broken, where, and when (``end`` None: still on)."""

    SCHEMA_VERSION: ClassVar[int] = 1
    fault_id: str
    kind: str
    entity: Mapping[str, str]
    start: float
    end: float | None
    detail: Mapping[str, Any] = field(default_factory=dict)


Event = (
    TelemetryBatch
    | LogEvent
    | TrainingStep
    | TrainingStepBatch
    | Detection
    | Prediction
    | Alert
    | ProbeResult
    | RemediationRun
    | ActionRequest
    | ActionReport
    | FaultInjection
)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        TelemetryBatch,
        LogEvent,
        TrainingStep,
        TrainingStepBatch,
        Detection,
        Prediction,
        Alert,
        ProbeResult,
        RemediationRun,
        ActionRequest,
        ActionReport,
        FaultInjection,
    )
}
