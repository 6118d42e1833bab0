"""The XID catalog: what each NVIDIA driver XID code means and what to do about it.

The catalog is data (``vigil/catalogs/xid.yaml``), read by collectors to annotate log lines and by
analytics to classify them; ``XidCatalog.load()`` validates every entry so a typo fails at start.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from vigil.config import safe_load_bounded
from vigil.errors import ConfigError
from vigil.events import Severity

XidAction = Literal["restart_app", "reset_gpu", "reboot_node", "drain_and_rma", "check_app", "none"]
ACTIONS: frozenset[str] = frozenset(get_args(XidAction))
SEVERITIES: frozenset[str] = frozenset(get_args(Severity))


@dataclass(frozen=True, slots=True)
class XidEntry:
    code: int
    name: str
    meaning: str
    severity: Severity
    fatal: bool  # the GPU or node is unusable until someone acts; False: one application's problem
    action: XidAction


def unknown_entry(code: int) -> XidEntry:
    """What an XID the catalog does not list is treated as: worth a look, not a page."""
    return XidEntry(
        code,
        f"Unknown Xid {code}",
        "Not in Vigil's XID catalog; see NVIDIA's XID documentation.",
        "warning",
        False,
        "check_app",
    )


class XidCatalog(Mapping[int, XidEntry]):
    def __init__(self, entries: Mapping[int, XidEntry]) -> None:
        self._entries = dict(entries)

    @classmethod
    def load(cls, path: Path | None = None) -> XidCatalog:
        """The packaged catalog, or the YAML file at ``path``; raises ConfigError naming the entry."""
        packaged = resources.files("vigil").joinpath("catalogs/xid.yaml")
        text = packaged.read_text() if path is None else path.read_text()
        try:
            data = safe_load_bounded(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"xid catalog: not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise ConfigError("xid catalog: expected a mapping with an 'entries' list")
        entries: dict[int, XidEntry] = {}
        for i, raw in enumerate(data["entries"]):
            entry = _entry(raw, f"entries[{i}]")
            if entry.code in entries:
                raise ConfigError(f"xid catalog: entries[{i}].code: duplicate XID {entry.code}")
            entries[entry.code] = entry
        return cls(entries)

    def classify(self, code: int) -> XidEntry:
        return self._entries.get(code) or unknown_entry(code)

    def __getitem__(self, code: int) -> XidEntry:
        return self._entries[code]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def _entry(raw: Any, where: str) -> XidEntry:
    if not isinstance(raw, dict):
        raise ConfigError(f"xid catalog: {where}: expected a mapping")
    expected = {"code", "name", "meaning", "severity", "fatal", "action"}
    if set(raw) != expected:
        raise ConfigError(f"xid catalog: {where}: keys must be {sorted(expected)}, got {sorted(raw)}")
    code, fatal = raw["code"], raw["fatal"]
    if isinstance(code, bool) or not isinstance(code, int) or code <= 0:
        raise ConfigError(f"xid catalog: {where}.code: must be a positive integer")
    if not isinstance(fatal, bool):
        raise ConfigError(f"xid catalog: {where}.fatal: must be true or false")
    for key in ("name", "meaning"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ConfigError(f"xid catalog: {where}.{key}: must be a non-empty string")
    if raw["severity"] not in SEVERITIES:
        raise ConfigError(f"xid catalog: {where}.severity: {raw['severity']!r} not one of {sorted(SEVERITIES)}")
    if raw["action"] not in ACTIONS:
        raise ConfigError(f"xid catalog: {where}.action: {raw['action']!r} not one of {sorted(ACTIONS)}")
    return XidEntry(
        code, raw["name"], raw["meaning"], cast(Severity, raw["severity"]), fatal, cast(XidAction, raw["action"])
    )
