"""The alerting service's one config model (the ``alerting:`` section of the Vigil config file)."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from vigil.alerting.notifiers.config import (  # re-exported: the notifier models live beside their notifiers
    EmailNotifierConfig,
    LogNotifierConfig,
    NotifierConfig,
    PagerDutyNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)
from vigil.alerting.runbooks.config import RemediationConfig
from vigil.alerting.sections import EngineSections

from vigil.config import ConsumerHealthConfig, FrozenModel, PositiveDuration, raise_key_errors
from vigil.events import Severity
from vigil.secret import Secret

__all__ = [
    "AlertingConfig",
    "EmailNotifierConfig",
    "LogNotifierConfig",
    "NotifierConfig",
    "PagerDutyNotifierConfig",
    "PredictionAlertsConfig",
    "RetryConfig",
    "SlackNotifierConfig",
    "WebhookNotifierConfig",
]

MIN_ADMIN_TOKEN = 24  # characters: a guessable admin token would open every write
# probe, arm and model_version tell canary alerts apart (one per model version and serving node; a probe
# asks one model). No other detector sets them, so no other alert's fingerprint changes; "model" stays out
# (a GPU model such as H100 is a common label that must not split an alert).
DEFAULT_IDENTITY_LABELS = (
    "cluster",
    "host",
    "gpu_index",
    "job_id",
    "rank",
    "disk_serial",
    "probe",
    "arm",
    "model_version",
)


class RetryConfig(FrozenModel):
    """One retry stage for every notifier: exponential backoff with jitter, capped."""

    initial_backoff: PositiveDuration = 0.5
    max_backoff: Annotated[PositiveDuration, Field(le=86400)] = 30.0
    max_attempts: Annotated[int, Field(ge=0)] = 0  # 0: retry forever (an outage delays, never loses)
    jitter_seed: int | None = None  # fixed seed: reproducible backoff in tests and replays

    @model_validator(mode="after")
    def _ordered(self) -> RetryConfig:
        if self.max_backoff < self.initial_backoff:
            message = f"must not be shorter than initial_backoff ({self.initial_backoff:g}s)"
            raise_key_errors(self, [(("max_backoff",), message, self.max_backoff)])
        return self


class RetentionConfig(FrozenModel):
    """How long finished records are kept. Delivered and failed outbox rows and notification-log entries
    older than ``max_age``, and alerts resolved longer ago than that, are deleted every ``interval``,
    on their own thread. Nothing pending is ever pruned: not a row still to send, not an alert with one,
    not an alert whose last state is unpublished. Keep ``max_age`` well above how far back a replay of
    the detections topic can reach: a replayed firing detection for a pruned alert would page again."""

    max_age: PositiveDuration = 7 * 86400.0
    interval: PositiveDuration = 3600.0
    batch: Annotated[int, Field(ge=1)] = 5000  # rows per transaction, so the service never waits long


class ApiConfig(FrozenModel):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: a free port, see AlertingService.api_port
    enabled: bool = True
    # Where people reach this API (behind a proxy, say); notifications link to <public_url>/incidents/<id>.
    public_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    # An admin token known from the start (a Secret: {file: ...} or {env: ...}); without it, `vigil alerting`
    # makes one in the store and prints it once, unless an admin token is there already.
    admin_token: Secret | None = None

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, value: Secret | None) -> Secret | None:
        if value is not None and len(value.reveal()) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"must be at least {MIN_ADMIN_TOKEN} characters; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def check_template(text: str) -> str:
    """A ``str.format`` template whose fields are plain names (a label, an evidence key, ``probability``,
    ``horizon``, ``eta``...): attribute or index access could reach into Python objects, so it is refused.
    Literal braces are written ``{{`` and ``}}``."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from exc
    for _, name, spec, _ in parts:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"template field {{{name}}} must be a plain name such as {{host}}")
        if spec and "{" in spec:
            raise ValueError(f"template field {{{name}}} has a nested field in its format spec")
    return text


class PredictionRule(FrozenModel):
    """When a predictor's output becomes an early-warning alert, and what it tells the person.

    The alert opens when the probability reaches ``open_at`` and resolves when it falls below
    ``close_at``; in between nothing changes (hysteresis), so a risk hovering at the threshold
    does not flap. ``forecast`` rules read ``horizon_s`` as the time until the threshold is
    reached (an ETA), and become critical when it is closer than ``critical_within``.
    """

    alertname: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    open_at: Probability
    close_at: Probability
    severity: Severity = "warning"
    action: str = ""
    summary: str = "{entity}: {probability} chance within {horizon}"
    forecast: bool = False
    critical_within: PositiveDuration | None = None
    # Evidence shown in the evidence annotation but never among the top terms: context, not cause.
    context_evidence: list[str] = Field(default_factory=list)
    top_terms: Annotated[int, Field(ge=0, le=20)] = 3
    enabled: bool = True

    @field_validator("action", "summary")
    @classmethod
    def _templates(cls, value: str) -> str:
        return check_template(value)

    @model_validator(mode="after")
    def _hysteresis(self) -> PredictionRule:
        if self.close_at > self.open_at:
            raise ValueError(f"close_at ({self.close_at}) must not exceed open_at ({self.open_at})")
        if self.critical_within is not None and not self.forecast:
            raise ValueError("critical_within applies to forecast rules only (set forecast: true)")
        return self


class RepeatOffenderRule(FrozenModel):
    """A GPU board whose prediction carries ``repeat_offender: true`` (the predictor's lemon score):
    one alert per serial, so it follows the board across hosts and slots."""

    alertname: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "GpuRepeatOffender"
    severity: Severity = "warning"
    action: str = "open an RMA case for serial {gpu_serial}"
    summary: str = (
        "GPU serial {gpu_serial} (now {host} GPU {gpu_index}) is a repeat offender: "
        "lemon score {lemon_score:.1f} (decayed hardware incidents)"
    )
    enabled: bool = True

    @field_validator("action", "summary")
    @classmethod
    def _templates(cls, value: str) -> str:
        return check_template(value)


_GPU_ACTION = (
    "drain the node ({host}) at the next job boundary; "
    "check `nvidia-smi -i {gpu_index} -q -d ROW_REMAPPER,ECC,PAGE_RETIREMENT`; RMA if remap failure"
)
_DISK_RULE: dict[str, Any] = {
    "alertname": "DiskFailureRisk",
    "open_at": 0.2,
    "close_at": 0.1,
    "action": "back up what lives on {device} ({host}), check it with `smartctl -a` and plan its replacement",
    "summary": "Disk {device} on {host}: {probability} chance of failure within {horizon}",
    "context_evidence": ["smart_9_raw", "smart_194_raw"],  # power-on hours, temperature
}
# The rule prior is Bayes' rule on two yes/no facts, so over 30 days it can say only ~0.03% (clean),
# ~2.2% (a reallocation-type counter above zero) or ~10% (and growing this week); 0.2 would never
# open. It opens on "flagged and growing" and resolves once the counter stops growing.
_DISK_PRIOR_RULE: dict[str, Any] = {**_DISK_RULE, "open_at": 0.05, "close_at": 0.03}
# Defaults per predictor (analytics/predict); a rule in the config file is merged over its default.
DEFAULT_PREDICTION_RULES: dict[str, dict[str, Any]] = {
    "gpu_risk": {
        "alertname": "GpuFailureRisk",
        "open_at": 0.5,
        "close_at": 0.3,
        "action": _GPU_ACTION,
        "summary": "GPU {gpu_index} on {host}: {probability} chance of failure within {horizon}",
        "context_evidence": ["lemon_score", "repeat_offender"],
    },
    "disk_rule_prior": _DISK_PRIOR_RULE,
    "disk_gbm": _DISK_RULE,
    "time_to_disk_full": {
        "alertname": "FilesystemFillingUp",
        "open_at": 1.0,
        "close_at": 0.5,
        "forecast": True,
        "critical_within": 3600.0,
        "action": (
            "free space on {mountpoint} ({host}): find the largest consumers "
            "(`du -xh --max-depth=2 {mountpoint} | sort -h | tail`), rotate or move data, or grow the filesystem"
        ),
        "summary": "Filesystem {mountpoint} on {host} will be full {eta} (at the current rate of filling)",
    },
    "time_to_thermal_limit": {
        "alertname": "GpuApproachingThermalLimit",
        "open_at": 1.0,
        "close_at": 0.5,
        "forecast": True,
        "action": (
            "check the cooling of {host} (fans, airflow, inlet temperature) and GPU {gpu_index}'s power draw; "
            "drain the node before the GPU throttles if it keeps climbing"
        ),
        "summary": (
            "GPU {gpu_index} on {host} will reach its slowdown temperature ({limit_celsius:.0f} °C, "
            "now {temperature_celsius:.0f} °C) {eta}"
        ),
    },
}


class PredictionAlertsConfig(FrozenModel):
    """Early-warning alerts from the predictions topic: one rule per predictor name."""

    enabled: bool = True
    rules: dict[str, PredictionRule] = Field(default_factory=dict)
    repeat_offender: RepeatOffenderRule = Field(default_factory=RepeatOffenderRule)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Each configured rule is merged over its predictor's default, so ``gpu_risk: {open_at: 0.7}``
        keeps the default alert name, action and close_at; a predictor without a default needs a full rule."""
        if not isinstance(data, dict):
            return data
        given = data.get("rules") or {}
        if not isinstance(given, dict):
            return data
        rules: dict[str, Any] = {name: dict(rule) for name, rule in DEFAULT_PREDICTION_RULES.items()}
        for name, rule in given.items():
            base = rules.get(name, {})
            rules[name] = {**base, **rule} if isinstance(rule, dict) else rule
        return {**data, "rules": rules}

    def rule(self, predictor: str) -> PredictionRule | None:
        rule = self.rules.get(predictor)
        return rule if rule is not None and rule.enabled else None


class AlertingConfig(EngineSections):
    group: Annotated[str, Field(min_length=1)] = "vigil-alerting"
    db_path: Path | None = None  # None: <data_dir>/alerting/alerts.db, see resolve_db_path
    api: ApiConfig = Field(default_factory=ApiConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    identity_labels: list[str] = Field(default_factory=lambda: list(DEFAULT_IDENTITY_LABELS))
    max_poll_records: Annotated[int, Field(ge=1, le=100_000)] = 500
    # The longest a receiver's outbox worker idles between scans.
    dispatch_interval: Annotated[PositiveDuration, Field(le=60)] = 0.5
    dispatch_batch: Annotated[int, Field(ge=1, le=10_000)] = 100
    predictions: PredictionAlertsConfig = Field(default_factory=PredictionAlertsConfig)
    remediation: RemediationConfig = Field(default_factory=RemediationConfig)
    health: ConsumerHealthConfig = Field(default_factory=ConsumerHealthConfig)  # when /healthz fails

    @model_validator(mode="after")
    def _remediation_references(self) -> AlertingConfig:
        """A remediation receiver needs the engine on; the notifiers it pages must exist."""
        where: list[tuple[str | int, ...]] = [("notifiers", i) for i in range(len(self.notifiers))]
        configs = list(self.notifiers)
        for i, receiver in enumerate(self.receivers):
            where += [("receivers", i, "integrations", j) for j in range(len(receiver.integrations))]
            configs += receiver.integrations
        robots = [path for path, cfg in zip(where, configs, strict=True) if cfg.type == "remediation"]
        if robots and not self.remediation.enabled:
            message = "a remediation receiver needs alerting.remediation.enabled: true"
            raise_key_errors(self, [((*robots[0], "type"), message, "remediation")])
        unknown = sorted(set(self.remediation.page) - set(self.integrations()))
        if unknown:
            raise_key_errors(self, [(("remediation", "page"), f"no notifier named {unknown[0]!r}", unknown[0])])
        return self

    def resolve_db_path(self, data_dir: Path) -> Path:
        return self.db_path if self.db_path is not None else data_dir / "alerting" / "alerts.db"
