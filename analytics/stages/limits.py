"""Series limits: how many series one host and one partition may hold, and the alert when one is hit.

Every series gets a slot in every telemetry detector's state columns and in the partition's
snapshot, for as long as the partition is assigned. One record that names 100,000 new series (a
broken exporter, a label carrying a request id, a hostile producer) would therefore grow analytics
by ~100 MB and its snapshot by ~34 MB for good. :class:`SeriesBudget` caps the series per host and
per partition where slots are allocated (``SlotTable.admit``); a batch's series beyond the cap are
dropped from it and reported as a :class:`Refusal`, and :class:`SeriesLimitAlerts` turns refusals
into one ``SeriesLimitExceeded`` detection per host and episode, resolved once that host has sent
nothing over its limit for ``clear_after`` seconds of event time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vigil.events import Detection, series_key

Scope = Literal["host", "partition"]
ALERTNAME = "SeriesLimitExceeded"
DETECTOR = "series_limit"
ACTION = (
    "find what makes {host} invent series (a label with unbounded values such as a request id, a "
    "misconfigured exporter) and fix it at the source; its excess samples are dropped until then"
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """One batch's series that got no slot: ``series`` of them, ``samples`` values dropped."""

    cluster: str
    host: str
    scope: Scope
    limit: int
    series: int
    samples: int
    ts: float


class SeriesBudget:
    """Series counts per host and per partition against their limits (slot allocation keeps them)."""

    def __init__(self, per_host: int | None = None, per_partition: int | None = None) -> None:
        self.per_host = per_host
        self.per_partition = per_partition
        self._hosts: dict[str, int] = {}
        self._partitions: dict[int, int] = {}

    def exceeded(self, partition: int, host: str) -> tuple[Scope, int] | None:
        """The limit one more series of ``host`` in ``partition`` would break, or None if it fits."""
        if self.per_host is not None and self._hosts.get(host, 0) >= self.per_host:
            return "host", self.per_host
        if self.per_partition is not None and self._partitions.get(partition, 0) >= self.per_partition:
            return "partition", self.per_partition
        return None

    def add(self, partition: int, host: str) -> None:
        self._hosts[host] = self._hosts.get(host, 0) + 1
        self._partitions[partition] = self._partitions.get(partition, 0) + 1

    def remove(self, partition: int, hosts: Iterable[str]) -> None:
        """A partition's slots were released: forget its count and one series per entry of ``hosts``."""
        self._partitions.pop(partition, None)
        for host in hosts:
            left = self._hosts.get(host, 0) - 1
            if left > 0:
                self._hosts[host] = left
            else:
                self._hosts.pop(host, None)

    def host_series(self, host: str) -> int:
        return self._hosts.get(host, 0)


class SeriesLimitAlerts:
    """Refusals into detections: one firing per host and episode, one resolve after ``clear_after``.

    The state is one entry per host over its limit, so it costs nothing in the normal case; it is
    snapshotted with the host's partition so that a restart can still resolve an episode.
    """

    def __init__(self, clear_after: float) -> None:
        self.clear_after = clear_after
        self.open: dict[str, dict[str, Any]] = {}  # host -> {cluster, scope, limit, refused, last}

    def update(self, refusals: Iterable[Refusal]) -> list[Detection]:
        out: list[Detection] = []
        for r in refusals:
            state = self.open.get(r.host)
            if state is not None:
                state["refused"] += r.series
                state["last"] = max(state["last"], r.ts)
                continue
            state = {"cluster": r.cluster, "scope": r.scope, "limit": r.limit, "refused": r.series, "last": r.ts}
            self.open[r.host] = state
            out.append(_detection(r.host, state, "firing", r.ts))
        return out

    def resolve(self, now: float) -> list[Detection]:
        """Hosts that sent nothing over their limit for ``clear_after`` of event time resolve."""
        done = [h for h, s in self.open.items() if now - s["last"] >= self.clear_after]
        return [_detection(h, self.open.pop(h), "resolved", now) for h in done]

    def snapshot(self, hosts: set[str]) -> dict[str, dict[str, Any]]:
        return {h: dict(s) for h, s in self.open.items() if h in hosts}

    def restore(self, blob: Mapping[str, Mapping[str, Any]]) -> None:
        for host, state in blob.items():
            self.open[str(host)] = dict(state)

    def drop(self, hosts: set[str]) -> None:
        for host in hosts & self.open.keys():
            del self.open[host]


def _detection(host: str, state: Mapping[str, Any], decision: Literal["firing", "resolved"], ts: float) -> Detection:
    labels = {"alertname": ALERTNAME, "cluster": str(state["cluster"]), "host": host}
    scope, limit = state["scope"], int(state["limit"])
    summary = (
        f"{host} exceeded the per-{scope} series limit of {limit}: its new series are dropped"
        if decision == "firing"
        else f"{host} has sent no series over the per-{scope} limit of {limit} for a while"
    )
    return Detection(
        ts=ts,
        detector=DETECTOR,
        series=series_key(ALERTNAME, {k: v for k, v in labels.items() if k != "alertname"}),
        labels=labels,
        score=float(state["refused"]),
        decision=decision,
        severity="warning",
        reason={
            "scope": scope,
            "limit": limit,
            "refused_series": int(state["refused"]),
            "action": ACTION.format(host=host),
        },
        window_start=float(state["last"]) if decision == "firing" else ts,
        window_end=ts,
        summary=summary,
    )
