"""What every collector is: a ``collect()`` that reads one source through an injected reader.

A collector never touches the bus. The agent's runner (``vigil.collectors.agent``) owns scheduling,
batching samples into one ``TelemetryBatch`` per host per tick, buffering while the broker is away,
and the ``vigil_collector_errors_total{collector,error}`` counter.

``collect()`` yields three kinds of item:

- ``Sample``: ``(series_key, value)``, the series named with :func:`vigil.events.series_key` and the
  metric names of :mod:`vigil.catalog` (base units, ``_total`` for counters). The tick's time is
  the runner's; a collector does not stamp samples.
- ``LogEvent``: a discrete event (an XID line, an NVML XID event, a changed dcgm XID field).
- ``TrainingStepBatch`` (or a single ``TrainingStep``): a training job's steps read from outside the
  job (``training_scrape``); the runner publishes it to the training topic keyed by job id.
- ``Problem``: something it could not read (one GPU, one field, one sensor). It goes on yielding what
  it can. The runner counts each Problem as ``vigil_collector_errors_total{collector, error}`` and
  logs each distinct (collector, error, detail) once. An exception escaping ``collect()`` is caught
  by the runner too (error = the exception's class name); the samples yielded before it are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vigil.events import LogEvent, TrainingStep, TrainingStepBatch

Sample = tuple[str, float]


@dataclass(frozen=True, slots=True)
class Problem:
    """A part of a source that could not be read this time. ``error`` is a short, stable label value
    (``not_supported``, ``timeout``, ``parse``, ``permission``, ``missing_binary``...); ``detail`` is for
    the log line."""

    error: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CollectorContext:
    """What a collector knows about where it runs (host and cluster go into its LogEvents)."""

    host: str
    cluster: str = "default"


Item = Sample | LogEvent | TrainingStep | TrainingStepBatch | Problem


@runtime_checkable
class Collector(Protocol):
    name: str

    def collect(self) -> Iterable[Item]: ...
