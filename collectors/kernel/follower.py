"""The ``kernel_log`` collector: follows one kernel log source and yields a LogEvent per event line.

Delivery: at least once, and no duplicates across a clean restart. ``collect()`` first commits the
position reached by the *previous* call (an atomic write of the state file), then reads on and hands
the new events over. The runner calls ``collect()`` again only after it has buffered the previous
tick's items durably, so a committed position never runs ahead of what the runner holds:

- crash after a tick was handed over but before the next ``collect()``: the position on disk is the
  one before that tick, so the restarted follower reads those lines again (duplicates, bounded by
  one tick, which the XID detector's per-GPU episodes and alerting's fingerprints absorb);
- crash while writing the state file: the rename is atomic, the old position stays, same as above;
- clean stop: a runner that flushes its buffer on shutdown then calls :meth:`KernelLogCollector.commit`
  (and ``close()``), so the restarted follower starts exactly after the last event handed over.

Nothing is lost as long as the source still holds the lines (kmsg's ring, the journal, the file or
its rotated sibling); when it no longer does, a ``gap`` Problem says so. The XID catalog is the
shared one (:mod:`vigil.xid`): each XID is logged with its catalog name and action, and analytics
reads the same catalog to classify the event (``LogEvent`` carries the code, not the text).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from vigil.collectors.base import CollectorContext, Item, Problem
from vigil.collectors.kernel.classify import classify, gpu_announcement
from vigil.collectors.kernel.gpus import PROC_GPUS, GpuIdentity, GpuMap, default_discovery
from vigil.collectors.kernel.journal import JournalSource
from vigil.collectors.kernel.kmsg import KmsgSource, read_boot_id
from vigil.collectors.kernel.logfile import FileSource
from vigil.collectors.kernel.position import PositionStore
from vigil.collectors.kernel.sources import Line, Source, StartAt
from vigil.collectors.kernel.timestamps import Clocks, host_boot_time

from vigil.clock import Clock, SystemClock
from vigil.config import FrozenModel, validate
from vigil.errors import ConfigError
from vigil.events import LogEvent
from vigil.xid import XidCatalog

log = logging.getLogger(__name__)

NAME = "kernel_log"
# Where a source starts on its first run: kmsg and journal hold this boot only, so all of it; a log
# file can hold weeks, so its end (old XIDs would page as new ones).
DEFAULT_START: dict[str, StartAt] = {"kmsg": "beginning", "journal": "beginning", "file": "end"}


class GpuOption(FrozenModel):
    index: Annotated[int, Field(ge=0)] | None = None
    uuid: str | None = None


class KernelLogOptions(FrozenModel):
    source: Literal["kmsg", "journal", "file"] = "kmsg"
    path: Path | None = None  # kmsg: the device (default /dev/kmsg); file: the log file (required)
    journalctl: str = "journalctl"
    journalctl_args: list[str] = Field(default_factory=list)  # e.g. ["--directory", "/host/var/log/journal"]
    state_dir: Path | None = Path(".vigil/collectors")  # None: no resume across restarts
    start_at: StartAt | None = None  # first run only; default per source (DEFAULT_START)
    timezone: str = "local"  # zone of wall times printed without one (dmesg -T, syslog, fabric manager)
    boot_time: float | None = None  # epoch seconds of the boot a since-boot time counts from; default: this host's
    max_lines: Annotated[int, Field(ge=1)] = 10_000  # per collect(); the rest waits for the next tick
    gpus: dict[str, GpuOption] = Field(default_factory=dict)  # PCI address -> index/uuid, overrides discovery
    discover_gpus: bool = True
    proc_gpus: Path = PROC_GPUS
    nvidia_smi: str = "nvidia-smi"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value != "local":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'UTC', or 'local')") from exc
        return value

    @field_validator("gpus")
    @classmethod
    def _pci(cls, value: dict[str, GpuOption]) -> dict[str, GpuOption]:
        for address in value:
            if not re.fullmatch(r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(\.[0-7])?", address):
                raise ValueError(f"{address!r} is not a PCI address like 0000:3b:00.0")
        return value

    @model_validator(mode="after")
    def _file_path(self) -> KernelLogOptions:
        if self.source == "file" and self.path is None:
            raise ValueError("source 'file' needs a path")
        return self


class KernelLogCollector:
    name = NAME

    def __init__(
        self,
        options: KernelLogOptions,
        context: CollectorContext,
        source: Source,
        store: PositionStore,
        clock: Clock | None = None,
    ) -> None:
        self.options = options
        self.identity = source_identity(options)
        self.context = context
        self.source = source
        self.store = store
        self.clock = clock or SystemClock()
        self.catalog = XidCatalog.load()
        self.gpus = GpuMap(
            {k: GpuIdentity(v.index, v.uuid) for k, v in options.gpus.items()},
            default_discovery(options.proc_gpus, options.nvidia_smi) if options.discover_gpus else None,
            self.clock.monotonic,
        )
        self._pending: dict[str, Any] | None = None  # the position after the last items handed over
        self._committed: dict[str, Any] | None = None
        self._announced: set[tuple[str | None, int]] = set()  # XIDs already logged at INFO

    def collect(self) -> list[Item]:
        items: list[Item] = []
        problem = self.commit()
        if problem is not None:
            items.append(problem)
        batch = self.source.read(self.options.max_lines)
        items.extend(batch.problems)
        for line in batch.lines:
            event = self._event(line)
            if event is not None:
                items.append(event)
        if batch.position is not None:
            self._pending = batch.position
        return items

    def commit(self) -> Problem | None:
        """Store the position after everything handed over so far; a failed write is retried next time."""
        if self._pending is None or self._pending == self._committed:
            return None
        try:
            self.store.save(self.identity, self._pending)
        except OSError as exc:
            return Problem("state_write", f"{self.store.path}: {exc.strerror or exc}")
        self._committed = self._pending
        return None

    def close(self) -> None:
        self.source.close()

    def _event(self, line: Line) -> LogEvent | None:
        message = line.stamped.message
        if announced := gpu_announcement(message):
            self.gpus.learn_uuid(*announced)
        finding = classify(message, line.stamped.level)
        if finding is None:
            return None
        gpu = self.gpus.lookup(finding.pci) if finding.pci else None
        on_gpu = finding.kind in ("xid", "fallen_off_bus") or gpu is not None
        event = LogEvent(
            ts=line.stamped.ts if line.stamped.ts is not None else self.clock.now(),
            host=self.context.host,
            cluster=self.context.cluster,
            kind=finding.kind,
            code=finding.code,
            raw=line.raw,
            gpu_pci=finding.pci if on_gpu else None,
            gpu_uuid=gpu.uuid if gpu else None,
            gpu_index=gpu.index if gpu else None,
            source=self.source.kind,
        )
        if finding.kind == "xid" and finding.code is not None:
            self._log_xid(event, finding.code)
        return event

    def _log_xid(self, event: LogEvent, code: int) -> None:
        """The catalog's reading of an XID in the node's own log: the first per GPU and code at INFO
        (an application can print thousands of Xid 13 lines), repeats at DEBUG."""
        entry = self.catalog.classify(code)
        first = (event.gpu_pci, code) not in self._announced
        if first and len(self._announced) < 4096:
            self._announced.add((event.gpu_pci, code))
        where = f"GPU {event.gpu_index} ({event.gpu_pci})" if event.gpu_index is not None else f"GPU {event.gpu_pci}"
        log.log(
            logging.INFO if first else logging.DEBUG,
            "XID %d on %s: %s; action %s",
            code,
            where,
            entry.name,
            entry.action,
        )


def source_identity(options: KernelLogOptions) -> str:
    """What is followed; a stored position written for anything else is not resumed from."""
    if options.source == "journal":
        return "journal:" + " ".join([options.journalctl, *options.journalctl_args])
    return f"{options.source}:{options.path or '/dev/kmsg'}"


def build_source(options: KernelLogOptions, position: dict[str, Any] | None, clock: Clock) -> Source:
    start_at = options.start_at or DEFAULT_START[options.source]
    boot_time = options.boot_time if options.boot_time is not None else host_boot_time()
    if options.source == "kmsg":
        return KmsgSource(options.path or Path("/dev/kmsg"), position, start_at, boot_time, read_boot_id())
    if options.source == "journal":
        return JournalSource(options.journalctl, options.journalctl_args, position, start_at)
    tz = None if options.timezone == "local" else ZoneInfo(options.timezone)
    if options.path is None:  # the options model already refuses this; kept for a direct caller
        raise ConfigError(f"agent.collectors.{NAME}.path: source 'file' needs a path")
    return FileSource(options.path, position, start_at, Clocks(boot_time, tz, clock.now))


def create(options: dict[str, Any], context: CollectorContext, clock: Clock | None = None) -> KernelLogCollector:
    opts = validate(KernelLogOptions, options, prefix=f"agent.collectors.{NAME}")
    clock = clock or SystemClock()
    store = PositionStore(opts.state_dir / f"{NAME}-{opts.source}.json" if opts.state_dir else None)
    position = store.load(source_identity(opts))
    return KernelLogCollector(opts, context, build_source(opts, position, clock), store, clock)
