"""The dcgm-exporter collector: scrape its Prometheus text (URL or file) and map it onto Vigil's names.

The mapping is the data table in :mod:`vigil.collectors.gpu.dcgm_fields`. Decisions:

- An unknown ``DCGM_*`` field is not passed through: DCGM fields mix MHz, MiB, %, ns and mJ, so a
  guessed name would break the base-unit contract every rule relies on. It is reported once as a
  Problem ``unmapped_field`` naming the field, which is what an operator needs to add it to the table.
- A scrape that does not parse yields a Problem ``parse`` and no samples, as Prometheus drops a
  scrape it cannot parse: a half-read exposition would look like GPUs vanishing.
- ``DCGM_FI_DEV_XID_ERRORS`` is the last XID seen, so it is published as ``gpu_xid_last`` and a
  LogEvent is emitted when it changes to a non-zero value. The first scrape only sets the baseline:
  the value is sticky and undated, so emitting it would page again for an old XID after every agent
  restart (the kernel-log collector sees XIDs with their time, including while the agent was down).
  Where the exporter publishes the true counter ``DCGM_EXP_XID_ERRORS_TOTAL{xid}`` (mapped to
  ``gpu_xid_errors_total``), events come from its increments instead, which also catch the same XID
  twice in a row. ``DCGM_EXP_XID_ERRORS_COUNT`` counts XIDs in a sliding window, so it falls as the
  window slides: it is ``gpu_xid_errors_in_window``, not a ``_total`` counter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import model_validator
from vigil.collectors.base import Collector, CollectorContext, Item, Problem, Sample
from vigil.collectors.gpu.common import (
    SeriesKeys,
    Unsupported,
    gpu_labels,
    info_sample,
    normalise_pci,
    throttle_samples,
    xid_event,
)
from vigil.collectors.gpu.dcgm_fields import (
    IGNORED_FIELDS,
    INFO_LABELS,
    SERIES_LABELS,
    THROTTLE_FIELDS,
    XID_FIELD,
    XID_TOTAL_FIELD,
    lookup,
)

from vigil.clock import Clock, SystemClock
from vigil.config import FrozenModel, PositiveDuration, validate

DEFAULT_URL = "http://127.0.0.1:9400/metrics"
MAX_KEY_SETS = 4096  # series label sets remembered; pods come and go, the cache must not grow forever


class DcgmOptions(FrozenModel):
    url: str | None = None  # default DEFAULT_URL when no file is given
    file: Path | None = None  # read a saved scrape instead (tests, air-gapped debugging)
    timeout: PositiveDuration = 5.0

    @model_validator(mode="after")
    def _one_source(self) -> DcgmOptions:
        if self.url is not None and self.file is not None:
            raise ValueError("set url or file, not both")
        return self


GpuKey = tuple[str, str]  # (gpu index label, uuid)


@dataclass(slots=True)
class _Scrape:
    """What one scrape says about identities and XIDs, gathered while its samples are mapped."""

    identities: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    xid_last: dict[GpuKey, float] = field(default_factory=dict)
    xid_totals: dict[tuple[str, str, str], float] = field(default_factory=dict)
    pci: dict[GpuKey, str] = field(default_factory=dict)


class DcgmCollector:
    def __init__(
        self,
        context: CollectorContext,
        options: DcgmOptions | None = None,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = "dcgm"
        self.context = context
        self.options = options or DcgmOptions()
        self.clock = clock or SystemClock()
        self.source = str(self.options.file) if self.options.file else self.options.url or DEFAULT_URL
        self.unsupported = Unsupported()
        self._client = client
        self._keys: dict[tuple[str, ...], SeriesKeys] = {}
        self._xid_last: dict[GpuKey, float] = {}
        self._xid_totals: dict[tuple[str, str, str], float] = {}

    def collect(self) -> Iterator[Item]:
        text = self._fetch()
        if isinstance(text, Problem):
            yield text
            return
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as exc:
            yield Problem("parse", f"{self.source}: {exc}")
            return
        scrape = _Scrape()
        seen_dcgm = False
        for family in families:
            if family.name.startswith("DCGM_"):
                seen_dcgm = True
                yield from self._family(family.name, family.samples, scrape)
        if not seen_dcgm:
            yield Problem("no_dcgm_fields", f"{self.source}: no DCGM_* metric in the scrape")
            return
        yield from self._infos(scrape)
        yield from self._xid_events(scrape)

    # ---------------------------------------------------------------- fetch

    def _fetch(self) -> str | Problem:
        if self.options.file is not None:
            try:
                return self.options.file.read_text()
            except FileNotFoundError:
                return Problem("missing_file", f"{self.source}: no such file")
            except PermissionError:
                return Problem("permission", f"{self.source}: permission denied")
            except (OSError, UnicodeDecodeError) as exc:
                return Problem("unreadable", f"{self.source}: {exc}")
        if self._client is None:
            self._client = httpx.Client(timeout=self.options.timeout)
        try:
            response = self._client.get(self.source, headers={"Accept": "text/plain"})
        except httpx.TimeoutException:
            return Problem("timeout", f"{self.source}: no answer in {self.options.timeout:g}s")
        except httpx.TransportError as exc:
            return Problem("unreachable", f"{self.source}: {type(exc).__name__}")
        if response.status_code != 200:
            return Problem("http_status", f"{self.source}: HTTP {response.status_code}")
        return response.text

    # ---------------------------------------------------------------- mapping

    def _family(self, name: str, samples: list[Any], scrape: _Scrape) -> Iterator[Item]:
        if name in IGNORED_FIELDS or (name, "dcgm-exporter") in self.unsupported:
            return
        mapping = lookup(name)
        if mapping is None and name not in THROTTLE_FIELDS:
            yield self.unsupported.add(name, "dcgm-exporter", "unmapped_field", "no mapping to a Vigil metric")
            return
        for sample in samples:
            labels: Mapping[str, str] = sample.labels
            value = float(sample.value)
            gpu = labels.get("gpu", "")
            if not gpu or not math.isfinite(value):
                error, where = (
                    ("no_gpu_label", "a sample without a gpu label") if not gpu else ("invalid_value", "a NaN")
                )
                if (name, where) not in self.unsupported:
                    yield self.unsupported.add(name, where, error, f"{self.source}: {dict(labels)} {value}")
                continue
            keys = self._series_keys(labels)
            uuid = self._note_identity(labels, scrape)
            if mapping is None:
                yield from throttle_samples(keys, int(value))
                continue
            extra = dict(mapping.labels)
            extra.update((ours, labels[theirs]) for theirs, ours in mapping.keep if labels.get(theirs))
            yield keys(mapping.metric, **extra), value * mapping.scale
            if name == XID_FIELD:
                scrape.xid_last[gpu, uuid] = value
            elif name == XID_TOTAL_FIELD and labels.get("xid"):
                scrape.xid_totals[gpu, uuid, labels["xid"]] = value

    def _series_keys(self, labels: Mapping[str, str]) -> SeriesKeys:
        token = (
            labels.get("gpu", ""),
            labels.get("GPU_I_ID", ""),
            *(f"{ours}={labels[theirs]}" for theirs, ours in SERIES_LABELS.items() if labels.get(theirs)),
        )
        keys = self._keys.get(token)
        if keys is None:
            if len(self._keys) >= MAX_KEY_SETS:
                self._keys.clear()
            users = {ours: labels[theirs] for theirs, ours in SERIES_LABELS.items() if labels.get(theirs)}
            keys = self._keys[token] = SeriesKeys(gpu_labels(token[0], token[1] or None, **users))
        return keys

    def _note_identity(self, labels: Mapping[str, str], scrape: _Scrape) -> str:
        uuid = labels.get("UUID") or labels.get("uuid") or labels.get("DCGM_FI_DEV_UUID") or ""
        gpu, mig = labels.get("gpu", ""), labels.get("GPU_I_ID", "")
        identity = scrape.identities.setdefault((gpu, mig, uuid), {})
        for theirs, ours in INFO_LABELS.items():
            value = labels.get(theirs)
            if value and ours not in identity:
                identity[ours] = normalise_pci(value) if ours == "pci_bus_id" else value
        if identity.get("pci_bus_id"):
            scrape.pci[gpu, uuid] = identity["pci_bus_id"]
        return uuid

    def _infos(self, scrape: _Scrape) -> Iterator[Sample]:
        for (gpu, mig, _uuid), identity in scrape.identities.items():
            labels = gpu_labels(gpu, mig or None)
            yield info_sample(SeriesKeys(labels), identity)

    # ---------------------------------------------------------------- XID events

    def _xid_events(self, scrape: _Scrape) -> Iterator[Item]:
        now = self.clock.now()
        counted = {(gpu, uuid) for gpu, uuid, _ in scrape.xid_totals}
        for key, total in scrape.xid_totals.items():
            before = self._xid_totals.get(key)
            self._xid_totals[key] = total
            if before is not None and total > before:
                gpu, uuid, xid = key
                raw = f"dcgm-exporter: XID {xid} count {before:g} -> {total:g} on GPU {gpu}"
                yield self._event(now, int(float(xid)), gpu, uuid, scrape, raw)
        for gpu_key, value in scrape.xid_last.items():
            before = self._xid_last.get(gpu_key)
            self._xid_last[gpu_key] = value
            if gpu_key in counted or before is None or value == before or value == 0:
                continue
            gpu, uuid = gpu_key
            raw = f"dcgm-exporter: DCGM_FI_DEV_XID_ERRORS {before:g} -> {value:g} on GPU {gpu}"
            yield self._event(now, int(value), gpu, uuid, scrape, raw)

    def _event(self, now: float, code: int, gpu: str, uuid: str, scrape: _Scrape, raw: str) -> Item:
        index = int(gpu) if gpu.isdigit() else None
        pci = scrape.pci.get((gpu, uuid))
        return xid_event(self.context, now, code, gpu_index=index, gpu_uuid=uuid, gpu_pci=pci, source="dcgm", raw=raw)


def create(options: dict[str, Any], context: CollectorContext) -> Collector:
    return DcgmCollector(context, validate(DcgmOptions, options, prefix="agent.collectors.dcgm"))
