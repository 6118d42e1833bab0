"""The two stage shapes: vectorised over a poll's telemetry frame, or event by event."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from vigil.analytics.stages.slots import Frame

from vigil.events import Decision, Detection, Severity, series_key


@runtime_checkable
class TelemetryStage(Protocol):
    """Scores every series of a poll at once; its state lives in slot columns of the SlotTable."""

    name: str

    def observe_frame(self, frame: Frame) -> list[Detection]: ...

    def columns(self) -> list[str]:
        """The slot columns to snapshot (the SlotTable exports them per partition)."""

    def rebuild(self) -> None:
        """Recompute derived state (per-entity counts) after slots were restored or released."""


@runtime_checkable
class EventStage(Protocol):
    """Consumes decoded events of one stream; keeps Python state keyed by the record's partition."""

    name: str
    stream: str  # "logs" or "training"

    def observe_event(self, event: Any, partition: int, now: float) -> list[Detection]: ...

    def tick(self, now: float) -> list[Detection]:
        """Time-driven decisions (hang, quiet period), called even when no records arrive."""

    def snapshot(self, partition: int) -> dict[str, Any]: ...

    def restore(self, partition: int, blob: Mapping[str, Any]) -> None: ...

    def drop(self, partition: int) -> None: ...


@runtime_checkable
class HeldStage(Protocol):
    """A telemetry stage with state beyond slot columns (a model per host), kept per partition, and
    work that may still be under way (``settle`` waits for it and returns what it decided)."""

    name: str

    def pump(self) -> list[Detection]:
        """What finished work decided; hand waiting work on (called at least once per tick)."""

    def snapshot(self, partition: int) -> dict[str, Any]: ...

    def restore(self, partition: int, blob: Mapping[str, Any]) -> None: ...

    def drop(self, partition: int) -> None: ...

    def settle(self) -> list[Detection]: ...

    def close(self) -> None: ...


AnyStage = TelemetryStage | EventStage


def each_round(frame: Frame, step: Callable[[Frame, int, int], list[Detection]]) -> list[Detection]:
    """Run a per-round step over a frame's rounds in stream order and gather what they decide."""
    out: list[Detection] = []
    for lo, hi in frame.rounds:
        out.extend(step(frame, lo, hi))
    return out


def detection(
    detector: str,
    labels: Mapping[str, str],
    decision: Decision,
    ts: float,
    *,
    score: float,
    severity: Severity,
    reason: Mapping[str, Any],
    since: float | None = None,
    summary: str = "",
) -> Detection:
    """A Detection whose series is its alertname plus identity labels (the record key downstream)."""
    name = labels.get("alertname", detector)
    ident = {k: v for k, v in labels.items() if k != "alertname"}
    return Detection(
        ts=ts,
        detector=detector,
        series=series_key(name, ident),
        labels=dict(labels),
        score=float(score),
        decision=decision,
        severity=severity,
        reason=dict(reason),
        window_start=since if since is not None else ts,
        window_end=ts,
        summary=summary,
    )
