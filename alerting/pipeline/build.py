"""``build_pipeline``: the incident engine's stages, in order, on one screen (Alertmanager's
``PipelineBuilder.New``). Why this order: ``pipeline/*.py`` and ARCHITECTURE.md "The incident engine".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vigil.alerting.config import AlertingConfig
from vigil.alerting.inhibit import Inhibitor, InhibitRuleConfig
from vigil.alerting.maintenance import MaintenanceMuter
from vigil.alerting.pipeline.base import Batch, Candidate, Stage
from vigil.alerting.pipeline.correlate import Correlate
from vigil.alerting.pipeline.group import Group, RouteStage
from vigil.alerting.pipeline.intake import Dedup, Intake
from vigil.alerting.pipeline.mute import Inhibit, Mute
from vigil.alerting.pipeline.notify import Notify, Receivers, Telling
from vigil.alerting.pipeline.record import Record
from vigil.alerting.priority import RecoveryCatalog
from vigil.alerting.routing import build_tree
from vigil.alerting.store import AlertStore
from vigil.alerting.topology import Topology


@dataclass
class Pipeline:
    stages: Sequence[Stage]
    notify: Notify
    telling: Telling

    def run(self, store: AlertStore, candidates: Sequence[Candidate], now: float) -> Batch:
        """Every stage over one batch, in one transaction: its state change and its notifications
        commit together or not at all.

        The batch goes through in rounds in which each alert appears once: an alert that fires and
        resolves within one batch (a backlog drained after an outage) is paged by the first round's
        notify stage (a critical one at once) before the second resolves it, as it would have been
        live; in one round its resolve would overwrite the firing state before anyone was told."""
        whole = Batch(store, now, [], everything=list(candidates))
        with store.transaction():
            for part in rounds(candidates):
                batch = Batch(store, now, part, everything=part)
                for stage in self.stages:
                    batch.candidates = stage.run(batch)
                whole.candidates.extend(batch.candidates)
                whole.changed.extend(batch.changed)
                whole.touched_incidents |= batch.touched_incidents
        return whole

    def tick(self, store: AlertStore, now: float) -> dict[int, str]:
        """The timers: groups whose wait or interval has passed, escalations whose timeout has."""
        with store.transaction():
            return self.notify.flush(store, now)


def rounds(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """The candidates in order, cut where an alert comes again (the common batch is one round)."""
    out: list[list[Candidate]] = [[]]
    seen: set[str] = set()
    for c in candidates:
        if c.fingerprint in seen:
            out.append([])
            seen = set()
        out[-1].append(c)
        seen.add(c.fingerprint)
    return out


def builtin_rules(catalog: RecoveryCatalog) -> list[InhibitRuleConfig]:
    return [InhibitRuleConfig.model_validate(rule) for rule in catalog.inhibit_rules]


def build_pipeline(config: AlertingConfig, topology: Topology, catalog: RecoveryCatalog) -> Pipeline:
    tree = build_tree(config.route_config())
    intervals = config.intervals()
    maintenance = MaintenanceMuter(config.maintenance, intervals)
    rules = [*config.inhibit_rules, *(builtin_rules(catalog) if config.builtin_inhibit_rules else [])]
    integrations = config.integrations()
    telling = Telling(
        Receivers(config.receiver_integrations(), {name: cfg.send_resolved for name, cfg in integrations.items()}),
        {p.name: p for p in config.escalation_policies},
        {r.name: r for r in config.oncall},
        config.api.public_url,
    )
    notify = Notify(tree, telling, maintenance, topology, intervals)
    stages: list[Stage] = [
        Intake(topology),  # scope: labels + rack, switch, job from the topology + source
        Dedup(),  # first / resolved / escalated; a replay or duplicate stops here
        Inhibit(Inhibitor(rules), topology),  # a consequence of a firing alert is muted: a symptom
        Correlate(topology, catalog, config.correlation.burst, config.correlation.fallback_by),  # incidents
        Mute(maintenance),  # silences and maintenance windows
        RouteStage(tree),  # the routing tree: receivers and timers
        Group(),  # store the alerts, resolve finished incidents, notification groups and their timers
        notify,  # due groups and escalations into the outbox (one retry stage delivers it)
        Record(),  # every alert's trail through the stages
    ]
    return Pipeline(stages, notify, telling)
