"""Scrape mode: training steps from a job that already exposes Prometheus metrics (collector ``training_scrape``).

Some jobs cannot be changed to call the SDK but already serve ``/metrics``. This collector fetches that
page (httpx), parses it with ``prometheus_client.parser``, and maps the metrics named in ``mapping``
onto ``TrainingStep`` fields, one rank per value of ``rank_label``.

It yields one ``TrainingStepBatch`` per scrape (the ranks that advanced, in columns), not telemetry
``Sample``s: Vigil's training detectors (non-finite loss, loss spike, hang, straggler) read the
training topic, and a step counter gives exactly their per-step meaning. The runner publishes it to
the training topic keyed by job id.

What a scrape yields, per rank (all of them in the one batch):

- **The step counter advanced** (``s0`` at the previous scrape, ``s1`` now): a row for step ``s1``
  with the current values. Steps in between are not invented: the job's metrics
  hold only the latest values. ``step_time_s`` is the mapped metric if there is one, else the mean
  over the interval, ``(t1 - t0) / (s1 - s0)``.
- **It did not advance**: nothing. A stuck job goes silent, which is what the hang detector looks for.
  So scrape faster than the hang timeout (``max(k x median step time, min_timeout)``, 10 s by
  default): an interval of a few seconds.
- **The first scrape of a rank, or a counter that went backwards** (a restart from a checkpoint): the
  baseline is (re)set and nothing is yielded; the next advance is reported.

A counter (``_total``) mapped to ``tokens_per_s`` or ``samples_per_s`` is turned into a rate over the
scrape interval; every other metric is read as a gauge. ``loss`` may be NaN (that is news, not an error).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field, field_validator
from vigil.collectors.base import CollectorContext, Item, Problem

from vigil.config import FrozenModel, PositiveDuration, validate
from vigil.events import TrainingStep, TrainingStepBatch

NAME = "training_scrape"
StepField = Literal[
    "step",
    "loss",
    "step_time_s",
    "compute_time_s",
    "tokens_per_s",
    "samples_per_s",
    "grad_norm",
    "learning_rate",
]
RATE_FIELDS = frozenset({"tokens_per_s", "samples_per_s"})


class ScrapeOptions(FrozenModel):
    url: str
    job_id: Annotated[str, Field(min_length=1)]
    # The job's metric names (as in the exposition, ``_total`` included) -> TrainingStep fields.
    mapping: dict[str, StepField]
    rank_label: str = "rank"
    rank: Annotated[int, Field(ge=0)] = 0  # for samples without ``rank_label``
    gpu_label: str | None = None  # a label holding the physical GPU index, if the job has one
    labels: dict[str, str] = Field(default_factory=dict)  # only samples with these labels (several jobs, one page)
    timeout: PositiveDuration = 5.0

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        return url

    @field_validator("mapping")
    @classmethod
    def _one_metric_per_field(cls, mapping: dict[str, StepField]) -> dict[str, StepField]:
        fields = list(mapping.values())
        for needed in ("step", "loss"):
            if needed not in fields:
                raise ValueError(f"needs a metric for {needed!r}")
        doubled = sorted({f for f in fields if fields.count(f) > 1})
        if doubled:
            raise ValueError(f"names more than one metric for {doubled}")
        return mapping


@dataclass(slots=True)
class _Reading:
    """One rank's mapped values in one scrape: field -> (value, is a counter)."""

    values: dict[str, tuple[float, bool]] = field(default_factory=dict)
    gpu_index: int | None = None


@dataclass(slots=True)
class _Baseline:
    ts: float
    step: int
    counters: dict[str, float]


class TrainingScrape:
    name = NAME

    def __init__(
        self,
        options: ScrapeOptions,
        context: CollectorContext,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.context = context
        self._client = client or httpx.Client(timeout=options.timeout)
        self._clock = clock
        self._baselines: dict[int, _Baseline] = {}

    def collect(self) -> Iterator[Item]:
        try:
            response = self._client.get(self.options.url)
            response.raise_for_status()
        except httpx.TimeoutException as exc:
            yield Problem("timeout", f"{self.options.url}: {exc}")
            return
        except httpx.HTTPError as exc:
            yield Problem("http", f"{self.options.url}: {exc}")
            return
        now = self._clock()
        try:
            readings = self._parse(response.text)
        except ValueError as exc:
            yield Problem("parse", f"{self.options.url}: {exc}")
            return
        if not readings:
            yield Problem("missing_metric", f"{self.options.url}: none of {sorted(self.options.mapping)}")
        steps: list[TrainingStep] = []
        for rank, reading in sorted(readings.items()):
            for item in self._advance(rank, reading, now):
                if isinstance(item, TrainingStep):
                    steps.append(item)
                else:
                    yield item
        if steps:
            yield TrainingStepBatch.from_steps(steps)

    def close(self) -> None:
        self._client.close()

    def _parse(self, text: str) -> dict[int, _Reading]:
        opts, out = self.options, dict[int, _Reading]()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                target = opts.mapping.get(sample.name)
                if target is None or any(sample.labels.get(k) != v for k, v in opts.labels.items()):
                    continue
                rank = _label_int(sample.labels, opts.rank_label, opts.rank)
                reading = out.setdefault(rank, _Reading())
                counter = family.type == "counter" or sample.name.endswith("_total")
                reading.values[target] = (float(sample.value), counter)
                if opts.gpu_label and opts.gpu_label in sample.labels:
                    reading.gpu_index = _label_int(sample.labels, opts.gpu_label, 0)
        return out

    def _advance(self, rank: int, reading: _Reading, now: float) -> Iterator[Item]:
        values = reading.values
        if "step" not in values or "loss" not in values:
            missing = [f for f in ("step", "loss") if f not in values]
            yield Problem("missing_metric", f"rank {rank}: no metric for {missing}")
            return
        raw_step = values["step"][0]
        if not math.isfinite(raw_step) or raw_step < 0:
            yield Problem("parse", f"rank {rank}: step counter is {raw_step}")
            return
        step = int(raw_step)
        counters = {f: v for f, (v, is_counter) in values.items() if is_counter and f in RATE_FIELDS}
        before = self._baselines.get(rank)
        self._baselines[rank] = _Baseline(now, step, counters)
        if before is None or step < before.step:
            return  # first sight of this rank, or the job restarted: a baseline, not a step
        if step == before.step:
            self._baselines[rank] = before  # no progress: keep measuring from the last advance
            return
        elapsed = max(now - before.ts, 1e-9)
        yield TrainingStep(
            ts=now,
            job_id=self.options.job_id,
            rank=rank,
            host=self.context.host,
            step=step,
            loss=values["loss"][0],
            step_time_s=_gauge(values, "step_time_s") or elapsed / (step - before.step),
            gpu_index=reading.gpu_index,
            compute_time_s=_gauge(values, "compute_time_s"),
            tokens_per_s=_rate(values, "tokens_per_s", before.counters, elapsed),
            samples_per_s=_rate(values, "samples_per_s", before.counters, elapsed),
            grad_norm=_gauge(values, "grad_norm"),
            learning_rate=_gauge(values, "learning_rate"),
            cluster=self.context.cluster,
        )


def _label_int(labels: dict[str, str], name: str, default: int) -> int:
    raw = labels.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ValueError(f"label {name}={raw!r} is not a non-negative integer")
    return int(raw)


def _gauge(values: dict[str, tuple[float, bool]], name: str) -> float | None:
    found = values.get(name)
    return found[0] if found is not None else None


def _rate(values: dict[str, tuple[float, bool]], name: str, before: dict[str, float], elapsed: float) -> float | None:
    found = values.get(name)
    if found is None:
        return None
    value, is_counter = found
    if not is_counter:
        return value
    previous = before.get(name)
    if previous is None or value < previous:
        return None  # no earlier reading, or the counter was reset: no rate this time
    return (value - previous) / elapsed


def create(options: dict[str, Any], context: CollectorContext) -> TrainingScrape:
    return TrainingScrape(validate(ScrapeOptions, options, prefix=f"agent.collectors.{NAME}"), context)
