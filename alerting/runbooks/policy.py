"""The XID policy (``vigil/catalogs/xid_policy.yaml``): per XID code, the runbook of the first response
and a ladder of counted windows per GPU serial. Loading validates it against the runbooks it names."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vigil.config import parse_duration, safe_load_bounded
from vigil.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Rung:
    count: int  # this many incidents of the code on one serial within the window (this one included)
    window: float
    runbook: str


@dataclass(frozen=True, slots=True)
class XidRule:
    codes: tuple[int, ...]
    first: str
    ladder: tuple[Rung, ...] = ()

    @property
    def longest_window(self) -> float:
        return max((r.window for r in self.ladder), default=0.0)

    def choose(self, counts: Mapping[float, int]) -> tuple[str, str]:
        """(runbook, why) given the count of incidents within each rung's window."""
        reached = [r for r in self.ladder if counts.get(r.window, 1) >= r.count]
        if not reached:
            return self.first, "first response"
        rung = max(reached, key=lambda r: r.count)
        seen = counts.get(rung.window, 1)
        return rung.runbook, f"ladder: {seen} incidents of this XID on this GPU within {rung.window / 86400:g} days"


class XidPolicy:
    def __init__(self, rules: Collection[XidRule]) -> None:
        self.rules = {code: rule for rule in rules for code in rule.codes}

    def rule(self, code: int) -> XidRule | None:
        return self.rules.get(code)

    def runbooks(self) -> set[str]:
        return {name for rule in self.rules.values() for name in (rule.first, *(r.runbook for r in rule.ladder))}

    @classmethod
    def load(cls, path: Path | None = None, known: Collection[str] | None = None) -> XidPolicy:
        """The packaged policy or ``path``; ``known`` runbook names, when given, must cover every name used."""
        where = str(path) if path is not None else "xid_policy.yaml"
        packaged = resources.files("vigil").joinpath("catalogs/xid_policy.yaml")
        text = path.read_text() if path is not None else packaged.read_text()
        try:
            data = safe_load_bounded(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("policies"), list):
            raise ConfigError(f"{where}: expected a mapping with a 'policies' list")
        rules = [_rule(raw, f"{where}: policies[{i}]") for i, raw in enumerate(data["policies"])]
        policy = cls(rules)
        seen: set[int] = set()
        for index, rule in enumerate(rules):
            for code in rule.codes:
                if code in seen:
                    raise ConfigError(f"{where}: policies[{index}].codes: XID {code} has two policies")
                seen.add(code)
        missing = sorted(policy.runbooks() - set(known)) if known is not None else []
        if missing:
            raise ConfigError(f"{where}: names runbooks that do not exist: {', '.join(missing)}")
        return policy


def _rule(raw: Any, where: str) -> XidRule:
    if not isinstance(raw, dict) or set(raw) - {"codes", "first", "ladder"} or "codes" not in raw or "first" not in raw:
        raise ConfigError(f"{where}: expected {{codes: [..], first: RUNBOOK, ladder: [..]}}")
    codes = raw["codes"]
    if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and c > 0 for c in codes):
        raise ConfigError(f"{where}.codes: a list of positive XID codes")
    ladder = []
    for index, rung in enumerate(raw.get("ladder") or []):
        if not isinstance(rung, dict) or set(rung) != {"count", "window", "runbook"}:
            raise ConfigError(f"{where}.ladder[{index}]: expected {{count, window, runbook}}")
        if not isinstance(rung["count"], int) or rung["count"] < 2:
            raise ConfigError(f"{where}.ladder[{index}].count: an integer of at least 2")
        try:
            window = parse_duration(rung["window"])
        except ValueError as exc:
            raise ConfigError(f"{where}.ladder[{index}].window: {exc}") from exc
        ladder.append(Rung(rung["count"], window, str(rung["runbook"])))
    return XidRule(tuple(codes), str(raw["first"]), tuple(ladder))
