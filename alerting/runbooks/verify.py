"""Verify before return to service: a node is resumed only when its checks pass.

Checks (a runbook's ``verify.checks``): every GPU reports telemetry again after verification started
(``telemetry_back``), no XID on the node for the ``hold`` period (``no_new_xid``), the listed error
counters unchanged over the hold (``counters_unchanged``: ECC double-bit and row remapping by
default), and an optional ``health_command`` (a burn-in, ``dcgmi diag -r 1``), run once the rest pass.

Where the evidence comes from. The alerting service did not consume telemetry, and verification
needs it for a handful of nodes at a time. :class:`TelemetryWatch` is a small consumer inside the
remediation runner, in its own group, over the telemetry and logs topics: a record whose key (the
host) is not under verification is skipped before it is decoded, so the cost is reading the topics'
bytes, not decoding the fleet; for a watched host it keeps, per GPU, when it last reported, the
counters' first and latest values, and the latest XID. The alternative, analytics publishing a
per-node health summary, would put remediation's questions (which counters, which hold) into
another service and make verification wait for a new event type; here the runner asks exactly what
the runbook says. Verification restarts its hold after a restart of the process (the watch is in
memory): conservative, never a premature resume.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from vigil.alerting.runbooks.actions.base import run_command

from vigil.bus.base import Bus, Record
from vigil.codec import decode
from vigil.errors import InvalidEvent
from vigil.events import LogEvent, TelemetryBatch, parse_series_key

log = logging.getLogger(__name__)
Outcome = Literal["pass", "fail", "wait"]


@dataclass(frozen=True, slots=True)
class VerifySpec:
    node: str
    timeout: float
    gpus: int
    telemetry_back: bool
    hold: float | None
    counters: tuple[str, ...]
    health_command: tuple[str, ...] = ()
    health_timeout: float = 300.0


class Telemetry(Protocol):
    def watch(self, host: str, since: float) -> None: ...

    def unwatch(self, host: str) -> None: ...

    def gpus_reporting(self, host: str, since: float) -> set[str]:
        """GPU indexes with a sample stamped after ``since``."""
        ...

    def last_xid(self, host: str) -> float | None: ...

    def counter_change(self, host: str, metrics: Collection[str]) -> dict[str, float]:
        """Per series of the given metrics on ``host``: latest minus first value seen while watched."""
        ...


def judge_verify(spec: VerifySpec, since: float, now: float, telemetry: Telemetry) -> tuple[Outcome, str]:
    """Pass, fail or wait (not yet), with why. ``since``: when verification started."""
    if spec.telemetry_back:
        reporting = telemetry.gpus_reporting(spec.node, since)
        if len(reporting) < spec.gpus:
            why = f"{len(reporting)} of {spec.gpus} GPUs report telemetry since the action"
            return _late(spec, since, now, why)
    last = telemetry.last_xid(spec.node)
    if spec.hold is not None:
        if last is not None and last > since:
            return "fail", f"a new XID on {spec.node} during verification"
        if now - since < spec.hold:
            return "wait", f"holding: no XID for {now - since:.0f}s of {spec.hold:.0f}s"
    changed = {k: v for k, v in telemetry.counter_change(spec.node, spec.counters).items() if v != 0}
    if changed:
        first = sorted(changed)[0]
        return "fail", f"{first} changed by {changed[first]:g} during verification"
    if spec.health_command:
        done = run_command(list(spec.health_command), spec.health_timeout)
        if not done.ok:
            return "fail", f"health command failed: {done.why()}"
    return "pass", "every check passed"


def _late(spec: VerifySpec, since: float, now: float, why: str) -> tuple[Outcome, str]:
    return ("fail", f"timed out: {why}") if now - since > spec.timeout else ("wait", why)


@dataclass(slots=True)
class _Host:
    since: float
    gpu_seen: dict[str, float] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    last_xid: float | None = None


class TelemetryWatch:
    """The verification consumer (see the module docstring). ``observe`` is fed by :meth:`run` from the
    bus, or directly by a test."""

    def __init__(self) -> None:
        self._hosts: dict[str, _Host] = {}
        self._keys: frozenset[bytes] = frozenset()
        self._lock = threading.Lock()

    def watch(self, host: str, since: float) -> None:
        with self._lock:
            if host not in self._hosts:
                self._hosts[host] = _Host(since)
                self._keys = frozenset(h.encode() for h in self._hosts)

    def unwatch(self, host: str) -> None:
        with self._lock:
            self._hosts.pop(host, None)
            self._keys = frozenset(h.encode() for h in self._hosts)

    def observe_record(self, record: Record) -> None:
        if record.key not in self._keys:
            return  # not under verification: never decoded
        try:
            event = decode(record.value)
        except InvalidEvent:
            return  # analytics dead-letters it; verification only reads
        self.observe(event)

    def observe(self, event: object) -> None:
        with self._lock:
            if isinstance(event, TelemetryBatch) and event.host in self._hosts:
                self._telemetry(self._hosts[event.host], event)
            elif isinstance(event, LogEvent) and event.host in self._hosts and event.kind in ("xid", "fallen_off_bus"):
                state = self._hosts[event.host]
                if event.ts >= state.since:
                    state.last_xid = max(state.last_xid or 0.0, event.ts)

    def _telemetry(self, state: _Host, batch: TelemetryBatch) -> None:
        if batch.ts.size == 0 or float(batch.ts[-1]) < state.since:
            return
        last_ts, row = float(batch.ts[-1]), batch.values[-1]
        for column, key in enumerate(batch.series):
            metric, labels = parse_series_key(key)
            gpu = labels.get("gpu_index")
            if gpu is not None:
                state.gpu_seen[gpu] = last_ts
            if metric.endswith("_total") or metric in ("gpu_remapped_rows", "gpu_row_remap_failure"):
                state.first.setdefault(key, float(row[column]))
                state.latest[key] = float(row[column])

    def gpus_reporting(self, host: str, since: float) -> set[str]:
        with self._lock:
            state = self._hosts.get(host)
            return {g for g, at in state.gpu_seen.items() if at >= since} if state else set()

    def last_xid(self, host: str) -> float | None:
        with self._lock:
            state = self._hosts.get(host)
            return state.last_xid if state else None

    def counter_change(self, host: str, metrics: Collection[str]) -> dict[str, float]:
        with self._lock:
            state = self._hosts.get(host)
            if state is None:
                return {}
            wanted = set(metrics)
            return {k: state.latest[k] - v for k, v in state.first.items() if k.partition("{")[0] in wanted}

    def run(self, bus: Bus, topics: Collection[str], group: str, stop: threading.Event) -> None:
        """Consume until ``stop``; offsets are committed as read (verification never replays the past)."""
        consumer = bus.consumer(list(topics), group)
        try:
            while not stop.is_set():
                records = consumer.poll(0.5, 2000)
                for record in records:
                    self.observe_record(record)
                if records:
                    consumer.commit()
        finally:
            consumer.close()


def spec_from_plan(verify: Mapping[str, object], default_gpus: int) -> VerifySpec:
    """The rendered verify section a plan stores, as a spec."""
    gpus = verify.get("gpus")
    hold = verify.get("no_new_xid_hold_s")
    return VerifySpec(
        node=str(verify["node"]),
        timeout=float(verify["timeout_s"]),  # type: ignore[arg-type]
        gpus=int(gpus) if isinstance(gpus, int) else default_gpus,
        telemetry_back=bool(verify.get("telemetry_back", True)),
        hold=float(hold) if isinstance(hold, int | float) else None,
        counters=tuple(str(c) for c in verify.get("counters_unchanged") or ()),  # type: ignore[attr-defined]
        health_command=tuple(str(c) for c in verify.get("health_command") or ()),  # type: ignore[attr-defined]
        health_timeout=float(verify.get("health_timeout_s", 300.0)),  # type: ignore[arg-type]
    )
