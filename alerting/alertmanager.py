"""Alertmanager's webhook payload (version 4) into candidate alerts, so Prometheus rules' alerts join the
same incidents as Vigil's own.

Point an Alertmanager receiver at ``POST /api/v1/intake/alertmanager``::

    receivers:
      - name: vigil
        webhook_configs: [{url: "http://vigil-alerting:8080/api/v1/intake/alertmanager", send_resolved: true}]

Identity: an alert's fingerprint is Vigil's (alert name and every label, hashed), so a Prometheus
alert that Alertmanager sends again and again (each ``group_interval``) is one alert here, deduplicated
like any other. ``severity`` comes from the ``severity`` label (``critical``/``page``/``error`` ->
critical, ``info``/``none`` -> info, anything else -> warning). A resolved alert is dated by its
``endsAt``. Alertmanager retries a webhook that fails, so the intake answers only after the batch
is committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from vigil.alerting.intake import fingerprint
from vigil.alerting.pipeline.base import Candidate

from vigil.events import Alert, Severity

_CRITICAL = {"critical", "page", "error", "high", "p1", "sev1"}
_INFO = {"info", "none", "low", "informational"}
Label = Annotated[str, Field(max_length=4096)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # Alertmanager may add fields; they are kept aside


class AmAlert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[Label, Label] = Field(min_length=1)
    annotations: dict[Label, Label] = Field(default_factory=dict)
    startsAt: AwareDatetime  # Alertmanager's field names, as it sends them
    endsAt: AwareDatetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AmPayload(_Model):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AmAlert] = Field(max_length=10_000)


def severity_of(labels: dict[str, str]) -> Severity:
    value = labels.get("severity", "").lower()
    if value in _CRITICAL:
        return "critical"
    return "info" if value in _INFO else "warning"


def _ts(value: datetime) -> float:
    return value.timestamp()


def candidates(payload: AmPayload, now: float) -> list[Candidate]:
    out = []
    for am in payload.alerts:
        labels = {str(k): str(v) for k, v in am.labels.items()}
        name = labels.get("alertname", "PrometheusAlert")
        labels["alertname"] = name
        resolved = am.status == "resolved"
        ends = _ts(am.endsAt) if am.endsAt is not None and am.endsAt.year > 1 else now
        when = ends if resolved else _ts(am.startsAt)
        alert = Alert(
            fingerprint=fingerprint(name, labels, sorted(labels)),
            status=am.status,
            labels=labels,
            annotations={str(k): str(v) for k, v in am.annotations.items()},
            starts_at=when,
            ends_at=ends if resolved else None,
            severity=severity_of(labels),
            updated_at=now,
        )
        out.append(Candidate(alert, "alertmanager", generator_url=am.generatorURL or None))
    return out
