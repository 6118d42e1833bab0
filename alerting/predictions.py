"""Predictions into early-warning alerts: the rule's hysteresis, the alert's identity and its words.

A ``Prediction`` is a risk, not a fault, so it opens an alert only when its probability reaches the
rule's ``open_at`` and resolves it only when the probability falls below ``close_at``; inside the
band it changes nothing. Everything here is pure: the service runs the candidates it returns
through the same transition rule, store and outbox as detections.

Prediction alerts are identified by the predictor's entity (the predictions topic's key, e.g.
``disk:node-1:sda``) and the cluster, not by the detection identity labels: a disk's device or a
filesystem's mountpoint is what tells two of them apart, and a repeat offender is a GPU serial
that follows the board from host to host.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping
from typing import Any

from vigil.alerting.config import PredictionAlertsConfig, PredictionRule, RepeatOffenderRule
from vigil.alerting.intake import fingerprint

from vigil.clock import to_iso
from vigil.events import Alert, Decision, Prediction, Severity

PREDICTION_IDENTITY = ("cluster", "entity")
_UNITS = (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))


def prediction_problem(prediction: Prediction) -> str | None:
    """Why a decoded prediction cannot be acted on (the codec checks types, not meaning); None if fine."""
    p, horizon = prediction.probability, prediction.horizon_s
    if not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        return f"probability {p!r} is not in [0, 1]"
    if not isinstance(horizon, int | float) or not math.isfinite(horizon) or horizon < 0:
        return f"horizon_s {horizon!r} is not a finite number of seconds >= 0"
    if not prediction.predictor or not prediction.entity:
        return "predictor and entity must not be empty"
    return None


def prediction_alerts(prediction: Prediction, config: PredictionAlertsConfig, now: float) -> list[Alert | None]:
    """One entry per rule that applies: the candidate alert (firing or resolved), or None when the
    probability sits inside the rule's hysteresis band. An empty list: no rule knows this predictor."""
    out: list[Alert | None] = []
    rule = config.rule(prediction.predictor)
    if rule is not None:
        out.append(_risk_alert(prediction, rule, now))
    lemon = config.repeat_offender
    flag = prediction.evidence.get("repeat_offender")
    serial = str(prediction.labels.get("gpu_serial", ""))
    if lemon.enabled and isinstance(flag, bool) and serial:
        out.append(_repeat_offender_alert(prediction, lemon, serial, flag, now))
    return out


def _risk_alert(prediction: Prediction, rule: PredictionRule, now: float) -> Alert | None:
    p = prediction.probability
    if p >= rule.open_at:
        status: Decision = "firing"
    elif p < rule.close_at:
        status = "resolved"
    else:
        return None
    severity = rule.severity
    if rule.critical_within is not None and prediction.horizon_s < rule.critical_within:
        severity = "critical"
    fields = template_fields(prediction)
    annotations = {
        "summary": render(rule.summary, fields),
        "probability": format(p, ".4g"),
        "horizon": duration_words(prediction.horizon_s),
        "horizon_s": format(prediction.horizon_s, ".6g"),
        "top_evidence": top_evidence(prediction.evidence, rule.context_evidence, rule.top_terms),
        **_common_annotations(prediction),
    }
    if rule.forecast:
        annotations["eta"] = fields["eta"]
        annotations["eta_at"] = fields["eta_at"]
    return _alert(
        prediction, rule.alertname, prediction.entity, status, severity, annotations, render(rule.action, fields), now
    )


def _repeat_offender_alert(
    prediction: Prediction, rule: RepeatOffenderRule, serial: str, flag: bool, now: float
) -> Alert:
    fields = template_fields(prediction)
    annotations = {"summary": render(rule.summary, fields), **_common_annotations(prediction)}
    return _alert(
        prediction,
        rule.alertname,
        f"gpu_serial:{serial}",
        "firing" if flag else "resolved",
        rule.severity,
        annotations,
        render(rule.action, fields),
        now,
    )


def _common_annotations(prediction: Prediction) -> dict[str, str]:
    return {
        "reason": json.dumps(dict(prediction.evidence), separators=(",", ":"), default=str),
        "predictor": prediction.predictor,
        "entity": prediction.entity,
    }


def _alert(
    prediction: Prediction,
    name: str,
    entity: str,
    status: Decision,
    severity: Severity,
    annotations: dict[str, str],
    action: str,
    now: float,
) -> Alert:
    labels = {str(k): str(v) for k, v in prediction.labels.items() if str(v) != ""}
    labels.update(alertname=name, severity=severity, entity=entity)
    return Alert(
        fingerprint=fingerprint(name, labels, PREDICTION_IDENTITY),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=prediction.ts,
        ends_at=prediction.ts if status == "resolved" else None,
        severity=severity,
        recommended_action=action,
        updated_at=now,
    )


# ---------------------------------------------------------------------------------------- words


def template_fields(prediction: Prediction) -> dict[str, Any]:
    """What a summary or action template may name: evidence keys, labels, and the prediction in words."""
    horizon = prediction.horizon_s
    return {
        **prediction.evidence,
        **prediction.labels,
        "entity": prediction.entity,
        "predictor": prediction.predictor,
        "kind": prediction.kind,
        "probability": percent(prediction.probability),
        "horizon": duration_words(horizon),
        "eta": "now" if horizon <= 0 else f"in about {duration_words(horizon)}",
        "eta_at": to_iso(prediction.ts + horizon),
    }


def percent(p: float) -> str:
    """0.62 -> "62%"; the ends say so rather than rounding a risk to a certainty or to nothing."""
    if 0.0 < p < 0.01:
        return "<1%"
    if 0.99 < p < 1.0:
        return ">99%"
    return f"{p:.0%}"


def duration_words(seconds: float) -> str:
    """604800 -> "7 days", 5400 -> "1.5 hours", 0 -> "0 seconds": the largest unit that fits."""
    seconds = max(float(seconds), 0.0)
    unit, size = next(((u, s) for u, s in _UNITS if seconds >= s), _UNITS[-1])
    value = seconds / size
    shown = f"{value:.1f}".removesuffix(".0") if value < 10 else f"{round(value)}"
    return f"{shown} {unit}" + ("" if shown == "1" else "s")


def top_evidence(evidence: Mapping[str, Any], context: list[str], count: int) -> str:
    """The first ``count`` numeric evidence terms in the predictor's order (predictors list the
    strongest first), leaving out the keys the rule calls context; ``name=value`` joined by commas."""
    terms = [
        f"{k}={v:.4g}"
        for k, v in evidence.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in context
    ]
    return ", ".join(terms[:count])


class _Missing:
    """A template field the prediction does not carry: shown as "?" whatever its format spec."""

    def __format__(self, spec: str) -> str:
        return "?"


class _SafeFormatter(string.Formatter):
    """Templates are checked at start (config); here a field that is absent or of an unexpected type
    for its spec degrades to "?" or plain text, because a record must never stop the consumer."""

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), _Missing())

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            return str(super().format_field(value, format_spec))
        except (ValueError, TypeError):
            return str(value)


def render(template: str, fields: Mapping[str, Any]) -> str:
    return _SafeFormatter().vformat(template, (), fields)
