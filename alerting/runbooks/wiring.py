"""Builds remediation for one alerting process from its config: runbooks, policy, actions, receiver, runner."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.alerting.runbooks.actions.build import build_actions, catalog_actions
from vigil.alerting.runbooks.actions.fleet import BusChannel
from vigil.alerting.runbooks.config import RemediationConfig
from vigil.alerting.runbooks.engine import Parts
from vigil.alerting.runbooks.loader import load_dir
from vigil.alerting.runbooks.policy import XidPolicy
from vigil.alerting.runbooks.runner import RemediationReceiver, RemediationRunner
from vigil.alerting.runbooks.verify import TelemetryWatch
from vigil.alerting.store import Database

from vigil.bus.base import Bus
from vigil.clock import Clock
from vigil.codec import encode
from vigil.errors import VigilError
from vigil.events import RemediationRun
from vigil.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Wired:
    parts: Parts
    receiver: RemediationReceiver
    runner: RemediationRunner


def load_parts(config: RemediationConfig, clock: Clock, **extra: Any) -> Parts:
    """Runbooks (validated against every action kind and the configured aliases), the XID policy and
    the actions this process can run. Raises ConfigError naming file, line and key."""
    runbooks = load_dir(config.runbooks_dir, catalog_actions(config.aliases))
    policy = XidPolicy.load(config.xid_policy, known=runbooks)
    actions = build_actions(config, clock, extra.pop("channel", None))
    return Parts(config, runbooks, policy, actions, clock, **extra)


def wire(
    config: RemediationConfig,
    notifier_names: Sequence[str],
    notifier_types: Sequence[str],
    db: Database | Path,
    bus: Bus,
    topics: Topics,
    clock: Clock,
    group: str,
    producer: Callable[[], Any],
) -> Wired:
    watch = TelemetryWatch() if config.verify.watch else None
    channel = BusChannel(producer(), topics.name("actions")) if config.fleet.enabled else None
    pagers = tuple(config.page) or tuple(n for n, t in zip(notifier_names, notifier_types, strict=True)
                                         if t != "remediation")

    def publish(event: RemediationRun) -> None:
        try:
            producer().send(topics.name("remediation"), encode(event), key=event.run_id.encode())
        except VigilError as exc:  # the broker away: the run's state is in the store; the event is a copy
            log.warning("remediation event for %s not published: %s", event.run_id, exc)

    parts = load_parts(config, clock, telemetry=watch, pagers=pagers, publish=publish, channel=channel)
    threads: list[Callable[[Any], None]] = []
    if watch is not None:
        streams = [topics.telemetry, topics.logs]
        threads.append(lambda stop: watch.run(bus, streams, f"{group}-verify", stop))
    if channel is not None:
        threads.append(lambda stop: channel.run(bus, topics.name("action_reports"), f"{group}-actions", stop))
    runner = RemediationRunner(parts, db, threads)
    return Wired(parts, RemediationReceiver(parts, db, runner.wake), runner)
