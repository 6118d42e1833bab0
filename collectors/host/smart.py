"""The ``smart`` collector: disk health from ``smartctl -j -a`` (smartmontools 7.0+ JSON output).

Devices are the configured list, or what ``smartctl --scan -j`` finds (its ``type``, e.g.
``sat``, ``nvme``, ``megaraid,0``, is passed back with ``-d``). ``-n standby`` (on by default) keeps
smartctl from spinning up a sleeping disk; such a disk is skipped quietly until it wakes.

smartctl's exit status is a bit mask (smartctl(8), EXIT STATUS). Bits 0-1 mean no data (the
command line did not parse, the device could not be opened): a Problem. Bit 2 means some SMART
command failed: what did come back is used, and a Problem says so. Bits 3-7 are findings about the
disk (failing status, attributes at or below threshold now or in the past, errors in the error or
self-test log), not failures to read it: the data is complete and is what those bits summarise.

Series, labelled ``device`` plus ``serial`` and ``model`` where smartctl reports them: overall
health (``disk_smart_passed``), temperature, power-on time in seconds; ATA attributes listed in
``attributes`` as raw and normalised values by ``attr_id``; NVMe media errors, percentage used and
available spare (and its threshold) as ratios, critical warning bits. An ATA raw value is the
48-bit number smartctl reports (what Backblaze-style SMART datasets use), except for temperature
attributes (190, 194), whose raw field packs min/max beside the current value: there the current
value smartctl decoded into ``raw.string`` is used.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from vigil.collectors.base import CollectorContext, Item, Problem, Sample
from vigil.collectors.host.common import Completed, label_value, last_words, run

from vigil import catalog as c
from vigil.config import FrozenModel, PositiveDuration, validate
from vigil.events import series_key

log = logging.getLogger(__name__)

NAME = "smart"
FAIL_COMMAND_LINE, FAIL_OPEN, FAIL_SMART_COMMAND = 0x01, 0x02, 0x04
TEMPERATURE_ATTRIBUTES = frozenset({190, 194})
_LEADING_NUMBER = re.compile(r"^\s*(-?\d+)")


class SmartDevice(FrozenModel):
    name: str  # /dev/sda, /dev/nvme0, /dev/bus/0
    type: str | None = None  # smartctl -d: sat, nvme, megaraid,0 ...


def _device(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class SmartOptions(FrozenModel):
    smartctl: str = "smartctl"
    devices: list[Annotated[SmartDevice, BeforeValidator(_device)]] = Field(default_factory=list)  # empty: --scan
    timeout: PositiveDuration = 30.0  # per smartctl run
    standby: bool = True  # pass -n standby: do not wake a sleeping disk
    attributes: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=lambda: [5, 9, 187, 188, 194, 197, 198, 199]
    )


def scan_devices(doc: dict[str, Any]) -> list[SmartDevice]:
    """``smartctl --scan -j`` output as devices."""
    found = []
    for entry in doc.get("devices") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            kind = entry.get("type")
            found.append(SmartDevice(name=entry["name"], type=kind if isinstance(kind, str) else None))
    return found


def device_label(device: SmartDevice) -> str:
    """``/dev/sda`` -> ``sda``; a device behind a RAID controller keeps its disk number: ``bus/0_megaraid_0``."""
    name = device.name.removeprefix("/dev/")
    return label_value(f"{name}_{device.type}" if device.type and "," in device.type else name)


def parse_report(doc: dict[str, Any], device: SmartDevice, attributes: frozenset[int]) -> list[Sample]:
    """The samples in one ``smartctl -j -a`` report."""
    labels = {"device": device_label(device)}
    for field, key in (("serial_number", "serial"), ("model_name", "model")):
        if isinstance(doc.get(field), str) and doc[field].strip():
            labels[key] = label_value(doc[field])
    values: list[tuple[str, dict[str, str], float]] = []
    status = doc.get("smart_status")
    if isinstance(status, dict) and isinstance(status.get("passed"), bool):
        values.append((c.DISK_SMART_HEALTHY, {}, 1.0 if status["passed"] else 0.0))
    current = _number((doc.get("temperature") or {}).get("current"))
    if current is not None:
        values.append((c.DISK_TEMPERATURE, {}, current))
    power_on = doc.get("power_on_time") or {}
    hours = _number(power_on.get("hours"))
    if hours is not None:
        values.append((c.DISK_POWER_ON, {}, hours * 3600.0 + (_number(power_on.get("minutes")) or 0.0) * 60.0))
    values += _ata_attributes(doc, attributes)
    values += _nvme_health(doc, have_temperature=current is not None, have_power_on=hours is not None)
    return [(series_key(metric, {**labels, **extra}), value) for metric, extra, value in values]


def _ata_attributes(doc: dict[str, Any], wanted: frozenset[int]) -> list[tuple[str, dict[str, str], float]]:
    out: list[tuple[str, dict[str, str], float]] = []
    for attr in (doc.get("ata_smart_attributes") or {}).get("table") or []:
        if not isinstance(attr, dict) or attr.get("id") not in wanted:
            continue
        attr_id = {"attr_id": str(attr["id"])}
        raw = attr.get("raw") or {}
        value = _number(raw.get("value"))
        if attr["id"] in TEMPERATURE_ATTRIBUTES and isinstance(raw.get("string"), str):
            decoded = _LEADING_NUMBER.match(raw["string"])
            value = float(decoded.group(1)) if decoded else value
        if value is not None:
            out.append((c.DISK_SMART_ATTRIBUTE, attr_id, value))
        normalized = _number(attr.get("value"))
        if normalized is not None:
            out.append((c.DISK_SMART_NORMALIZED, attr_id, normalized))
    return out


def _nvme_health(
    doc: dict[str, Any], have_temperature: bool, have_power_on: bool
) -> list[tuple[str, dict[str, str], float]]:
    health = doc.get("nvme_smart_health_information_log")
    if not isinstance(health, dict):
        return []
    out: list[tuple[str, dict[str, str], float]] = []
    for field, metric, scale in (
        ("media_errors", c.DISK_NVME_MEDIA_ERRORS, 1.0),
        ("percentage_used", c.DISK_NVME_PERCENT_USED, 0.01),  # may pass 100 %: a ratio above 1
        ("available_spare", c.DISK_NVME_SPARE, 0.01),
        ("available_spare_threshold", c.DISK_NVME_SPARE_THRESHOLD, 0.01),
        ("critical_warning", c.DISK_NVME_CRITICAL_WARNING, 1.0),
    ):
        value = _number(health.get(field))
        if value is not None:
            out.append((metric, {}, value * scale))
    if not have_temperature and (temperature := _number(health.get("temperature"))) is not None:
        out.append((c.DISK_TEMPERATURE, {}, temperature))
    if not have_power_on and (hours := _number(health.get("power_on_hours"))) is not None:
        out.append((c.DISK_POWER_ON, {}, hours * 3600.0))
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _messages(doc: dict[str, Any]) -> str:
    messages = (doc.get("smartctl") or {}).get("messages") or []
    return "; ".join(str(m.get("string", "")) for m in messages if isinstance(m, dict))


class SmartCollector:
    name = NAME

    def __init__(self, options: SmartOptions) -> None:
        self.options = options
        self._attributes = frozenset(options.attributes)

    def collect(self) -> list[Item]:
        items: list[Item] = []
        devices = list(self.options.devices)
        if not devices:
            scanned = self._json([self.options.smartctl, "--scan", "-j"], "scan", items)
            devices = scan_devices(scanned) if scanned is not None else []
        for device in devices:
            items.extend(self._device(device))
        return items

    def _device(self, device: SmartDevice) -> list[Item]:
        argv = [self.options.smartctl, "-j", "-a", *(["-n", "standby"] if self.options.standby else [])]
        argv += [*(["-d", device.type] if device.type else []), device.name]
        items: list[Item] = []
        doc = self._json(argv, device.name, items)
        if doc is None:
            return items
        status = (doc.get("smartctl") or {}).get("exit_status")
        status = status if isinstance(status, int) else 0
        if status & (FAIL_COMMAND_LINE | FAIL_OPEN):
            messages = _messages(doc)
            if re.search(r"STANDBY|SLEEP|IDLE", messages):
                log.debug("%s is in a low-power mode; not woken: %s", device.name, messages)
                return items
            error = "command_failed" if status & FAIL_COMMAND_LINE else "open_failed"
            return [*items, Problem(error, f"{device.name}: {messages or f'exit status {status}'}")]
        if status & FAIL_SMART_COMMAND:
            items.append(Problem("smart_command_failed", f"{device.name}: {_messages(doc) or 'partial data'}"))
        return [*items, *parse_report(doc, device, self._attributes)]

    def _json(self, argv: list[str], what: str, items: list[Item]) -> dict[str, Any] | None:
        done = run(argv, self.options.timeout)
        if isinstance(done, Problem):
            items.append(done)
            return None
        doc = _load(done)
        if doc is None:
            items.append(
                Problem("parse", f"{what}: smartctl exit {done.returncode}: {last_words(done.stderr or done.stdout)}")
            )
        return doc


def _load(done: Completed) -> dict[str, Any] | None:
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    # smartctl's own exit status is in the JSON too; the process's is authoritative when they differ.
    doc.setdefault("smartctl", {})["exit_status"] = done.returncode
    return doc


def create(options: dict[str, Any], context: CollectorContext) -> SmartCollector:
    return SmartCollector(validate(SmartOptions, options, prefix=f"agent.collectors.{NAME}"))
