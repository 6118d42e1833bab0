"""The analytics service's one config section (``analytics:`` in the Vigil config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator
from vigil.analytics.models.decide import DecideConfig
from vigil.analytics.models.robust import RobustConfig

from vigil.catalog import (
    GPU_ECC_DBE,
    GPU_ECC_SBE,
    GPU_MEMORY_TEMPERATURE,
    GPU_POWER,
    GPU_SM_CLOCK,
    GPU_TEMPERATURE,
    GPU_UTILIZATION,
)
from vigil.config import ConsumerHealthConfig, Duration, FrozenModel, PositiveDuration, raise_key_errors
from vigil.events import Severity

Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]


class ZScoreConfig(RobustConfig, DecideConfig):
    """The live ``zscore`` stage: the library's robust z bank and its decision layer, one flat section.

    Fields (defaults in ``models/robust.py`` and ``models/decide.py``): the level model ``alpha``,
    ``warmup``, ``rel_floor``, ``abs_floor``, ``learn_on_anomaly``, ``shift_after`` (re-anchor after
    that many same-sign outliers in a row); the decision ``min_hits`` in ``window``, ``clear_after``
    samples below ``clear_threshold`` (default threshold/2), ``cooldown``, ``calibration``,
    ``direction``. ``threshold`` (robust sigmas) is both the decision threshold and the outlier
    gate of learning, as it always was here.
    """


class PeersConfig(DecideConfig):
    """The live ``peers`` stage: each GPU against the same metric on its node siblings at the same tick.

    Decision fields as in :class:`DecideConfig` (``threshold`` in robust sigmas of the offset-corrected
    deviation). A GPU's usual place among its siblings (the one nearest the chassis exhaust runs a few
    degrees warmer for life) is learnt over ``warmup`` samples and subtracted, so it never pages.
    """

    metrics: list[str] = Field(
        default_factory=lambda: [GPU_TEMPERATURE, GPU_MEMORY_TEMPERATURE, GPU_SM_CLOCK, GPU_POWER]
    )
    # Smallest spread of a GPU's difference from its siblings, as a share of their median: with the
    # threshold of 6 sigmas, no page under a 12 % difference (8 °C at 65 °C, 240 MHz at 1980 MHz).
    rel_floor: Annotated[float, Field(gt=0)] = 0.02
    abs_floor: Positive = 1e-3  # smallest |median| a difference is divided by
    min_peers: Annotated[int, Field(ge=3)] = 3  # GPUs (itself included) needed for a comparison
    # GPUs busier or idler than the node's median by more than this are not compared: a node shared
    # by two jobs has two loads, and a cooler idle GPU is no fault.
    busy_tolerance: Annotated[float, Field(gt=0, le=1)] = 0.2
    warmup: Annotated[int, Field(ge=2)] = 30  # samples of a GPU's usual offset before it is judged
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.02  # EWMA weight of the usual offset


class ThresholdRule(FrozenModel):
    """A static rule, Prometheus style: ``metric op value`` true for ``for`` seconds fires."""

    # ``for`` is a keyword; accept ``for_`` too so a dumped config loads back.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    name: Annotated[str, Field(min_length=1)]
    metric: Annotated[str, Field(min_length=1)]
    op: Literal[">", "<"]
    value: float
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Severity = "warning"
    rate: bool = False  # compare the per-second rate of a counter, not its raw value
    action: str = ""


def default_rules() -> list[ThresholdRule]:
    return [
        ThresholdRule.model_validate(
            {
                "name": "GpuOverTemperature",
                "metric": GPU_TEMPERATURE,
                "op": ">",
                "value": 85.0,
                "for": "10s",
                "severity": "critical",
                "action": "check cooling; drain the node if it persists",
            }
        ),
        ThresholdRule.model_validate(
            {
                "name": "GpuEccDbeIncrease",
                "metric": GPU_ECC_DBE,
                "op": ">",
                "value": 0.0,
                "rate": True,
                "for": "0s",
                "keep_firing_for": "5m",
                "severity": "critical",
                "action": "reset_gpu",
            }
        ),
        ThresholdRule.model_validate(
            {
                "name": "GpuEccSbeRateHigh",
                "metric": GPU_ECC_SBE,
                "op": ">",
                "value": 1.0,
                "rate": True,
                "for": "10s",
                "severity": "warning",
                "action": "watch for row remapping; schedule a reset",
            }
        ),
    ]


class HangConfig(FrozenModel):
    k: Positive = 8.0  # times the longer of the median step time and the median gap between reports
    min_timeout: PositiveDuration = 10.0
    # Until a job's second step report shows its reporting cadence (and while the first step compiles
    # and joins NCCL), silence this long is a hang.
    startup_timeout: PositiveDuration = 300.0
    forget_after: PositiveDuration = 1800.0  # a job silent this long is gone: resolve and drop its state

    @model_validator(mode="after")
    def _forget_after_a_hang(self) -> HangConfig:
        # A job forgotten before it could be called hung would resolve the moment it fired.
        longest = max(self.min_timeout, self.startup_timeout)
        if self.forget_after <= longest:
            message = f"must be longer than min_timeout and startup_timeout ({longest:g}s)"
            raise_key_errors(self, [(("forget_after",), message, self.forget_after)])
        return self


class TrainingConfig(FrozenModel):
    nan_clear_steps: Count = 5  # finite-loss steps before TrainingLossNonFinite resolves
    spike_threshold: Positive = 6.0  # robust sigmas of the job's loss
    straggler_threshold: Positive = 4.0  # robust sigmas against own history and against peers
    step_lag: Count = 2  # steps behind the newest before a step's ranks are compared


class XidConfig(FrozenModel):
    quiet_period: PositiveDuration = 60.0  # no further XID on the GPU for this long resolves


class TruthfulnessConfig(FrozenModel):
    stale_k: Annotated[float, Field(gt=1)] = 5.0  # expected intervals without a sample
    min_interval: PositiveDuration = 1.0  # floor of the expected interval
    default_interval: PositiveDuration = 15.0  # expected interval of a series seen only once
    forget_after: PositiveDuration = 3600.0
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    frozen_min_run: Annotated[int, Field(ge=2)] = 10
    frozen_evidence: Annotated[float, Field(gt=0)] = 9.0  # -log10 chance of the run
    frozen_warmup: Annotated[int, Field(ge=2)] = 30
    # metric -> (reads zero at or below, siblings busy at or above the median)
    zero_metrics: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {GPU_UTILIZATION: (0.01, 0.5), GPU_POWER: (1.0, 50.0)}
    )
    zero_persist: Annotated[int, Field(ge=1)] = 3

    @model_validator(mode="after")
    def _forget_after_stale(self) -> TruthfulnessConfig:
        # A series forgotten before it can be overdue would never be reported stale.
        due = self.stale_k * self.min_interval
        if self.forget_after <= due:
            message = f"must be longer than stale_k x min_interval ({due:g}s)"
            raise_key_errors(self, [(("forget_after",), message, self.forget_after)])
        return self


class PredictConfig(FrozenModel):
    """The failure predictors and forecasts (``vigil.analytics.predict``), run once per ``every``."""

    enabled: bool = True
    every: PositiveDuration = 60.0  # event time between two passes over the slot table
    disk_model: Path | None = None  # from `vigil train disk`; None: the rule prior
    disk_horizon_days: Annotated[int, Field(ge=1, le=365)] = 30
    full_within: PositiveDuration = 86400.0  # publish a disk-full forecast closer than this
    thermal_within: PositiveDuration = 3600.0  # publish a thermal-limit forecast closer than this


class SeriesLimitConfig(FrozenModel):
    """How many series analytics keeps per host and per partition (``vigil.analytics.limits``).

    An 8-GPU node's NVML and host collectors send ~330 series (``vigil agent --once --collectors
    sim_gpu,host``); SMART, InfiniBand and dcgm-exporter add a few hundred more. 4,096 leaves room
    and still bounds what one broken exporter can make (a series costs ~600 bytes of memory and
    ~350 of snapshot). A partition carries many hosts: 262,144 is 64 hosts at the host limit.
    """

    per_host: Count = 4096
    per_partition: Count = 262_144
    clear_after: PositiveDuration = 600.0  # SeriesLimitExceeded resolves after this long with nothing refused


class AnalyticsConfig(FrozenModel):
    group: Annotated[str, Field(min_length=1)] = "vigil-analytics"
    detectors: list[str] = Field(
        default_factory=lambda: ["zscore", "peers", "threshold", "xid", "training", "truthfulness"]
    )
    zscore: ZScoreConfig = Field(default_factory=ZScoreConfig)
    peers: PeersConfig = Field(default_factory=PeersConfig)
    rules: list[ThresholdRule] = Field(default_factory=default_rules)
    hang: HangConfig = Field(default_factory=HangConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    xid: XidConfig = Field(default_factory=XidConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    truthfulness: TruthfulnessConfig = Field(default_factory=TruthfulnessConfig)
    series_limit: SeriesLimitConfig = Field(default_factory=SeriesLimitConfig)
    snapshot_every: Duration = 5.0  # snapshot+commit cadence; not every poll, to keep throughput (0: every poll)
    tick_every: Duration = 1.0  # time-driven checks (hang, XID quiet) run at least this often (0: every poll)
    # The consumer's wait for records: zero would spin the loop on an idle topic, a long one delays a stop.
    poll_timeout: Annotated[PositiveDuration, Field(le=60)] = 1.0
    max_poll_records: Annotated[int, Field(ge=1, le=100_000)] = 500
    health: ConsumerHealthConfig = Field(default_factory=ConsumerHealthConfig)  # when /healthz fails

    @model_validator(mode="after")
    def _known_detectors(self) -> AnalyticsConfig:
        from vigil.analytics.detectors import build_registry  # the registry imports this module

        known = build_registry()
        problems = [
            (("detectors", i), f"unknown detector (known: {', '.join(known.names())})", name)
            for i, name in enumerate(self.detectors)
            if name not in known
        ]
        raise_key_errors(self, problems)
        return self
