"""The alerting service's one config model (the ``alerting:`` section of the Vigil config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from vigil.config import Duration, FrozenModel

DEFAULT_IDENTITY_LABELS = ("cluster", "host", "gpu_index", "job_id", "rank", "disk_serial")


class WebhookNotifierConfig(FrozenModel):
    """A generic JSON webhook; with ``secret`` the body is signed (``X-Vigil-Signature: sha256=<hex>``)."""

    type: Literal["webhook"] = "webhook"
    name: str | None = None
    url: Annotated[str, Field(pattern=r"^https?://[^\s/$.?#][^\s]*$")]
    secret: str | None = None
    timeout: Duration = 5.0
    send_resolved: bool = True


class LogNotifierConfig(FrozenModel):
    """Writes every notification to the ``vigil.alerting.notify`` logger."""

    type: Literal["log"] = "log"
    name: str | None = None
    send_resolved: bool = True


NotifierConfig = Annotated[WebhookNotifierConfig | LogNotifierConfig, Field(discriminator="type")]


def _default_notifiers() -> list[NotifierConfig]:
    return [LogNotifierConfig()]


class RetryConfig(FrozenModel):
    """One retry stage for every notifier: exponential backoff with jitter, capped."""

    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    max_attempts: Annotated[int, Field(ge=0)] = 0  # 0: retry forever (an outage delays, never loses)
    jitter_seed: int | None = None  # fixed seed: reproducible backoff in tests and replays


class ApiConfig(FrozenModel):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: a free port, see AlertingService.api_port
    enabled: bool = True


class AlertingConfig(FrozenModel):
    group: str = "vigil-alerting"
    db_path: Path | None = None  # None: <data_dir>/alerting/alerts.db, see resolve_db_path
    api: ApiConfig = Field(default_factory=ApiConfig)
    notifiers: list[NotifierConfig] = Field(default_factory=_default_notifiers)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    identity_labels: list[str] = Field(default_factory=lambda: list(DEFAULT_IDENTITY_LABELS))
    max_poll_records: Annotated[int, Field(ge=1)] = 500
    dispatch_interval: Duration = 0.5  # longest the outbox dispatcher idles between scans
    dispatch_batch: Annotated[int, Field(ge=1)] = 100

    @model_validator(mode="after")
    def _unique_notifier_names(self) -> AlertingConfig:
        names = self.notifier_names()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"notifier names must be unique, duplicated: {', '.join(duplicates)}")
        return self

    def notifier_names(self) -> list[str]:
        """Stable names (outbox rows refer to them across restarts): ``name``, else the type, numbered
        when a type occurs more than once."""
        counts = {n.type: sum(1 for m in self.notifiers if m.type == n.type) for n in self.notifiers}
        names = []
        for index, notifier in enumerate(self.notifiers):
            if notifier.name:
                names.append(notifier.name)
            else:
                names.append(notifier.type if counts[notifier.type] == 1 else f"{notifier.type}-{index}")
        return names

    def resolve_db_path(self, data_dir: Path) -> Path:
        return self.db_path if self.db_path is not None else data_dir / "alerting" / "alerts.db"
