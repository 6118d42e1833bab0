"""The ``ipmi`` collector: BMC sensors from ``ipmitool sdr elist`` (temperatures, fans, power, volts, amps).

Two output shapes are read, told apart by their column count:

- ``sdr elist`` (the default command): ``name | id | status | entity | reading``, e.g.
  ``Inlet Temp | 04h | ok | 7.1 | 23 degrees C``: the entity id becomes the ``entity`` label;
- ``sdr`` / ``sdr list``: ``name | reading | status``, e.g. ``Sys Power | 10 Watts | ok``.

A reading is ``<number> <unit>``; the unit picks the metric (``degrees C``/``degrees F`` ->
``ipmi_temperature_celsius``, ``RPM``, ``Watts``, ``Volts``, ``Amps``). Other units (percent, CFM,
``unspecified``) and discrete readings (``0x00``, ``Presence detected``) have no catalog metric and
only report their status. ``ipmi_sensor_ok`` is 1 for status ``ok`` and 0 for any threshold or
failure status (``nc``, ``cr``, ``nr``, ``lnc``, ``ucr``...); ``ns`` (no sensor, no reading: a
DIMM slot that is empty, a BMC that has not read it yet) gives no series at all, so an absent
part is not counted as a failing one. Sensors are labelled by name, lower-cased with ``_``
(``CPU 1 Temp`` -> ``cpu_1_temp``); a name seen twice gets ``_2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from vigil.collectors.base import CollectorContext, Item, Problem, Sample
from vigil.collectors.host.common import last_words, run, sensor_name

from vigil import catalog as c
from vigil.config import FrozenModel, PositiveDuration, validate
from vigil.events import series_key

NAME = "ipmi"
_READING = re.compile(r"^(-?\d+(?:\.\d+)?)\s+(.+?)\s*$")
_UNITS = {
    "degrees c": c.IPMI_TEMPERATURE,
    "degrees f": c.IPMI_TEMPERATURE,
    "rpm": c.IPMI_FAN_SPEED,
    "watts": c.IPMI_POWER,
    "volts": c.IPMI_VOLTAGE,
    "amps": c.IPMI_CURRENT,
}


class IpmiOptions(FrozenModel):
    ipmitool: str = "ipmitool"
    # Arguments before the command, e.g. ["-I", "lanplus", "-H", "bmc-7", "-U", "monitor", "-E"] for a remote BMC.
    interface_args: list[str] = Field(default_factory=list)
    command: list[str] = Field(default_factory=lambda: ["sdr", "elist"])
    timeout: PositiveDuration = 30.0


@dataclass(frozen=True, slots=True)
class Reading:
    sensor: str  # normalised name
    entity: str | None
    status: str
    metric: str | None  # None: no numeric reading with a catalog unit
    value: float | None


def parse_sdr(text: str) -> list[Reading]:
    """Every sensor line of ``ipmitool sdr`` / ``sdr elist`` output."""
    readings: list[Reading] = []
    seen: dict[str, int] = {}
    for line in text.splitlines():
        cols = [col.strip() for col in line.split("|")]
        if len(cols) == 5:
            name, status, entity, reading = cols[0], cols[2], cols[3] or None, cols[4]
        elif len(cols) == 3:
            name, reading, status, entity = cols[0], cols[1], cols[2], None
        else:
            continue
        if not name:
            continue
        sensor = sensor_name(name)
        seen[sensor] = seen.get(sensor, 0) + 1
        if seen[sensor] > 1:
            sensor = f"{sensor}_{seen[sensor]}"
        metric, value = _reading(reading)
        readings.append(Reading(sensor, entity, status.lower(), metric, value))
    return readings


def _reading(text: str) -> tuple[str | None, float | None]:
    m = _READING.match(text)
    if not m:
        return None, None
    unit = m.group(2).lower()
    metric = _UNITS.get(unit)
    if metric is None:
        return None, None
    value = float(m.group(1))
    return metric, (value - 32.0) * 5.0 / 9.0 if unit == "degrees f" else value


def samples(readings: list[Reading]) -> list[Sample]:
    out: list[Sample] = []
    for r in readings:
        if r.status == "ns":
            continue
        labels = {"sensor": r.sensor} | ({"entity": r.entity} if r.entity else {})
        if r.metric is not None and r.value is not None:
            out.append((series_key(r.metric, labels), r.value))
        out.append((series_key(c.IPMI_SENSOR_OK, labels), 1.0 if r.status == "ok" else 0.0))
    return out


class IpmiCollector:
    name = NAME

    def __init__(self, options: IpmiOptions) -> None:
        self.options = options

    def argv(self) -> list[str]:
        return [self.options.ipmitool, *self.options.interface_args, *self.options.command]

    def collect(self) -> list[Item]:
        done = run(self.argv(), self.options.timeout)
        if isinstance(done, Problem):
            return [done]
        items: list[Item] = list(samples(parse_sdr(done.stdout)))
        if done.returncode != 0:  # e.g. no /dev/ipmi0; some BMCs fail one record and print the rest
            detail = last_words(done.stderr or done.stdout)
            items.append(Problem("command_failed", f"ipmitool exit {done.returncode}: {detail}"))
        return items


def create(options: dict[str, Any], context: CollectorContext) -> IpmiCollector:
    return IpmiCollector(validate(IpmiOptions, options, prefix=f"agent.collectors.{NAME}"))
