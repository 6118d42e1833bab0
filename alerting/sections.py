"""The incident engine's config sections (part of ``alerting:``), in Alertmanager's shape where it has one.

A pasted Alertmanager ``route:`` + ``receivers:`` + ``inhibit_rules:`` (+ ``time_intervals:``) block
works as it is. Cross-references are checked at start and a wrong one names its key
(``alerting.route.routes[1].receiver: unknown receiver 'gpu-team' (known: default, quiet)``).

Without a ``route``, Vigil routes every incident to the receiver ``default`` (every notifier in
``alerting.notifiers``) except early-warning alerts from predictions, which go to ``quiet`` (the
``log`` notifiers only): a risk is looked at, not paged, unless a route says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator
from vigil.alerting.escalation import EscalationPolicy, Rotation
from vigil.alerting.inhibit import InhibitRuleConfig
from vigil.alerting.maintenance import MaintenanceWindow, NamedTimeInterval
from vigil.alerting.notifiers.config import LogNotifierConfig, NotifierConfig
from vigil.alerting.receivers import ReceiverConfig
from vigil.alerting.routing import RouteConfig, check_tree

from vigil.config import FrozenModel, KeyProblem, PositiveDuration, raise_key_errors
from vigil.secret import Secret

DEFAULT_ROUTE: dict[str, Any] = {
    "receiver": "default",
    "routes": [{"matchers": ['source="prediction"', 'severity!="critical"'], "receiver": "quiet"}],
}


def _default_notifiers() -> list[NotifierConfig]:
    return [LogNotifierConfig()]


class StoreConfig(FrozenModel):
    # A SQLAlchemy URL (postgresql+psycopg://user:password@host/db); a secret since it may carry the
    # password. None: SQLite at alerting.db_path (default <data_dir>/alerting/alerts.db).
    url: Secret | None = None


class TopologyConfig(FrozenModel):
    file: Path | None = None


class BurstConfig(FrozenModel):
    """A burst: alerts from at least ``min_nodes`` nodes under one rack, switch or job (or from at
    least ``min_gpus`` GPUs of one node) within ``window`` open one incident at that common domain."""

    window: PositiveDuration = 10.0
    min_nodes: Annotated[int, Field(ge=2)] = 4
    min_gpus: Annotated[int, Field(ge=2)] = 3


class CorrelationConfig(FrozenModel):
    burst: BurstConfig = Field(default_factory=BurstConfig)
    # The incident of an alert that names no GPU, node, disk or job: one per these labels' values
    # (Alertmanager's usual group_by), so Prometheus alerts group as they did there.
    fallback_by: list[str] = Field(default_factory=lambda: ["alertname", "cluster"])


class EngineSections(FrozenModel):
    store: StoreConfig = Field(default_factory=StoreConfig)
    route: RouteConfig | None = None
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    builtin_inhibit_rules: bool = True  # vigil/catalogs/incidents.yaml's, after the configured ones
    time_intervals: list[NamedTimeInterval] = Field(default_factory=list)
    mute_time_intervals: list[NamedTimeInterval] = Field(default_factory=list)  # Alertmanager's older name
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    topology: TopologyConfig = Field(default_factory=TopologyConfig)
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)
    escalation_policies: list[EscalationPolicy] = Field(default_factory=list)
    oncall: list[Rotation] = Field(default_factory=list)
    notifiers: list[NotifierConfig] = Field(default_factory=_default_notifiers)

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

    # ------------------------------------------------------------------ what the engine reads

    def integrations(self) -> dict[str, NotifierConfig]:
        """Every notifier an outbox worker sends through: ``alerting.notifiers`` and the receivers' own."""
        out = dict(zip(self.notifier_names(), self.notifiers, strict=True))
        for receiver in self.receivers:
            out.update((cfg.name or "", cfg) for cfg in receiver.integrations)
        return out

    def receiver_integrations(self) -> dict[str, list[str]]:
        """Receiver name -> the integrations behind it."""
        if not self.receivers:
            names = self.notifier_names()
            quiet = [n for n, cfg in zip(names, self.notifiers, strict=True) if cfg.type == "log"]
            return {"default": names, "quiet": quiet}
        return {r.name: [*r.notifiers, *(cfg.name or "" for cfg in r.integrations)] for r in self.receivers}

    def route_config(self) -> RouteConfig:
        return self.route if self.route is not None else RouteConfig.model_validate(DEFAULT_ROUTE)

    def intervals(self) -> dict[str, list[Any]]:
        return {t.name: list(t.time_intervals) for t in [*self.time_intervals, *self.mute_time_intervals]}

    @model_validator(mode="after")
    def _references(self) -> EngineSections:
        names = [*self.notifier_names(), *(c.name or "" for r in self.receivers for c in r.integrations)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"notifier names must be unique, duplicated: {', '.join(duplicates)}")
        receivers = self.receiver_integrations()
        policies = {p.name for p in self.escalation_policies}
        rotations = {r.name for r in self.oncall}
        problems: list[KeyProblem] = check_tree(self.route_config(), set(receivers), set(self.intervals()), policies)
        if self.route is None and self.receivers:
            problems.append((("route",), "receivers are configured but no route sends to them", None))
        notifiers = set(self.notifier_names())
        for i, receiver in enumerate(self.receivers):
            for j, name in enumerate(receiver.notifiers):
                if name not in notifiers:
                    problems.append((("receivers", i, "notifiers", j), f"unknown notifier {name!r}", name))
        for i, policy in enumerate(self.escalation_policies):
            if policy.assign is not None and policy.assign not in rotations:
                problems.append((("escalation_policies", i, "assign"), f"unknown rotation {policy.assign!r}", None))
            for j, level in enumerate(policy.levels):
                for k, name in enumerate(level.receivers):
                    if name not in receivers:
                        where: tuple[str | int, ...] = ("escalation_policies", i, "levels", j, "receivers", k)
                        problems.append((where, f"unknown receiver {name!r}", name))
                if level.assign is not None and level.assign not in rotations:
                    where = ("escalation_policies", i, "levels", j, "assign")
                    problems.append((where, f"unknown rotation {level.assign!r}", level.assign))
        for i, window in enumerate(self.maintenance):
            for j, name in enumerate(window.time_intervals):
                if name not in self.intervals():
                    problems.append((("maintenance", i, "time_intervals", j), f"unknown time interval {name!r}", name))
        raise_key_errors(self, problems)
        return self
