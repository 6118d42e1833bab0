"""A kernel log line's time, whatever shape it was printed in, as epoch seconds.

The shapes the follower meets, recognised by their prefix:

- ``/dev/kmsg`` records ``prio,seq,usec,flags;message``: microseconds since boot;
- ``dmesg``: ``[12345.678901] message``, seconds since boot;
- ``dmesg -T``: ``[Sun Feb 23 16:24:18 2025] message``, local wall time without a zone;
- ``dmesg --time-format iso`` (optionally ``-x``'s ``kern  :warn  :`` before it) and RFC 3339
  syslog (rsyslog's high-precision format, ``journalctl -o short-iso``): ISO 8601, usually with an
  offset;
- classic syslog (RFC 3164): ``Feb 23 16:24:18 host kernel: ...``: no year and no zone;
- nvidia-fabricmanager: ``[Feb 25 2025 13:59:45] [ERROR] [tid 12727] ...``: no zone.

Times since boot are placed with the boot time (``Clocks.boot_time``; a file from an earlier boot
would need that boot's time, which the line does not carry). Wall times without a zone are read in
``Clocks.tz`` (the host's local zone by default, which is what dmesg -T, syslog and fabric manager
print); a classic syslog line gets the year that puts it at most a day in the future. A datetime is
never left naive.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}

# prio,seq,usec,flags[,more fields];message  (Documentation/ABI/testing/dev-kmsg)
KMSG_HEADER = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;")
_DECODED = re.compile(r"^[a-z]+ *:[a-z]+ *: ")  # dmesg -x: facility and level before the time
_SINCE_BOOT = re.compile(r"^\[ *(\d+\.\d+)\] ?")
_CTIME = re.compile(r"^\[[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\] ?")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(Z|[+-]\d\d:?\d\d)?) ")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) ")
_FABRIC = re.compile(r"^\[([A-Z][a-z]{2}) (\d{1,2}) (\d{4}) (\d\d):(\d\d):(\d\d)\] \[([A-Z]+)\] ")
_YEAR_SLACK_S = 86_400.0


def host_boot_time() -> float:
    """Epoch seconds at which this host's monotonic clock (the printk clock, no suspend) read zero."""
    return time.time() - time.monotonic()


@dataclass(frozen=True, slots=True)
class Clocks:
    boot_time: float
    tz: tzinfo | None  # None: the host's local zone
    now: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class Stamped:
    ts: float | None  # None: the line carries no time we recognise
    message: str
    level: str | None = None  # fabric manager's [LEVEL]


def stamp(line: str, clocks: Clocks) -> Stamped:
    """The line's time and the text after it."""
    if m := KMSG_HEADER.match(line):
        return Stamped(clocks.boot_time + int(m.group(3)) / 1e6, line[m.end() :])
    rest = line[m.end() :] if (m := _DECODED.match(line)) else line
    if m := _SINCE_BOOT.match(rest):
        return Stamped(clocks.boot_time + float(m.group(1)), rest[m.end() :])
    if m := _ISO.match(rest):
        text = m.group(1).replace(",", ".")
        return Stamped(_aware(datetime.fromisoformat(text), clocks.tz), rest[m.end() :])
    if m := _CTIME.match(rest):
        month, day, hh, mm, ss, year = m.groups()
        return Stamped(_wall(int(year), month, day, hh, mm, ss, clocks), rest[m.end() :])
    if m := _FABRIC.match(rest):
        month, day, year, hh, mm, ss, level = m.groups()
        return Stamped(_wall(int(year), month, day, hh, mm, ss, clocks), rest[m.end() :], level)
    if m := _SYSLOG.match(rest):
        return Stamped(_syslog(m.groups(), clocks), rest[m.end() :])
    return Stamped(None, rest)


def _aware(value: datetime, tz: tzinfo | None) -> float:
    if value.tzinfo is None:
        value = value.astimezone() if tz is None else value.replace(tzinfo=tz)
    return value.timestamp()


def _wall(year: int, month: str, day: str, hh: str, mm: str, ss: str, clocks: Clocks) -> float | None:
    if month not in MONTHS:
        return None
    try:
        value = datetime(year, MONTHS[month], int(day), int(hh), int(mm), int(ss))
    except ValueError:  # 30 Feb, hour 25: not a time, so not this shape
        return None
    return _aware(value, clocks.tz)


def _syslog(groups: tuple[str | None, ...], clocks: Clocks) -> float | None:
    month, day, hh, mm, ss = (g or "" for g in groups)
    now = clocks.now()
    year = datetime.fromtimestamp(now, clocks.tz).year
    ts = _wall(year, month, day, hh, mm, ss, clocks)
    if ts is not None and ts > now + _YEAR_SLACK_S:  # December's lines read in January
        ts = _wall(year - 1, month, day, hh, mm, ss, clocks)
    return ts
