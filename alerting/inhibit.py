"""Inhibition: while a source alert fires, target alerts that agree with it on the ``equal`` labels are
muted. Alertmanager's rule shape (``source_matchers``, ``target_matchers``, ``equal``, and the older
``source_match``/``_re`` maps); a label both alerts lack counts as equal, and an alert never inhibits
itself. Vigil adds one thing: the inhibited alert is a *symptom* of its source and joins the source's
incident (see ``pipeline/correlate.py``), so a GPU off the bus and the job it hangs are one incident.

Matching and ``equal`` read an alert's *scope*: its labels plus what the topology implies (its
``rack``, ``switch``, and ``job_id`` when its node runs exactly one job), so the built-in rule "a
fatal XID inhibits the job's hang" works though the XID alert names only its host and GPU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import Field, model_validator
from vigil.alerting.matchers import Matcher, Matchers, from_maps, matches_all
from vigil.alerting.pipeline.base import Mute

from vigil.config import FrozenModel

_LITERALS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\|[A-Za-z_][A-Za-z0-9_]*)*$")


class InhibitRuleConfig(FrozenModel):
    name: str = ""
    comment: str = ""
    source_matchers: Matchers = ()
    target_matchers: Matchers = ()
    equal: list[str] = Field(default_factory=list)
    source_match: dict[str, str] | None = None
    source_match_re: dict[str, str] | None = None
    target_match: dict[str, str] | None = None
    target_match_re: dict[str, str] | None = None

    @model_validator(mode="after")
    def _legacy_maps(self) -> InhibitRuleConfig:
        source = from_maps(self.source_match, self.source_match_re)
        target = from_maps(self.target_match, self.target_match_re)
        object.__setattr__(self, "source_matchers", (*self.source_matchers, *source))
        object.__setattr__(self, "target_matchers", (*self.target_matchers, *target))
        for key in ("source_match", "source_match_re", "target_match", "target_match_re"):
            object.__setattr__(self, key, None)  # folded in: a dump and reload does not add them twice
        if not self.source_matchers or not self.target_matchers:
            raise ValueError("an inhibit rule needs source and target matchers")
        return self


def source_names(matchers: Sequence[Matcher]) -> set[str] | None:
    """The alertnames a rule's source can have, when its matchers pin them (``=`` or an alternation of
    plain names); None when any alertname could be a source."""
    for m in matchers:
        if m.name == "alertname" and m.op == "=":
            return {m.value}
        if m.name == "alertname" and m.op == "=~" and _LITERALS.match(m.value):
            return set(m.value.split("|"))
    return None


@dataclass(frozen=True, slots=True)
class Source:
    fingerprint: str
    scope: Mapping[str, str]
    incident_id: int | None


@dataclass
class Inhibitor:
    """The rules over the firing sources of one batch, as a :class:`~vigil.alerting.pipeline.base.Muter`."""

    rules: Sequence[InhibitRuleConfig]
    _index: dict[tuple[int, tuple[str, ...]], list[Source]] = field(default_factory=dict)
    _targets: list[set[str] | None] = field(default_factory=list)  # per rule: the target names, if pinned
    _names: list[str] | None = None

    def __post_init__(self) -> None:
        self._targets = [source_names(rule.target_matchers) for rule in self.rules]
        sources = [source_names(rule.source_matchers) for rule in self.rules]
        self._names = None if any(n is None for n in sources) else sorted(set().union(*(n or set() for n in sources)))

    def names(self) -> list[str] | None:
        """Alertnames of every possible source (None: any alert can be one)."""
        return self._names

    def load(self, sources: Iterable[Source]) -> None:
        self._index.clear()
        for source in sources:
            self.add(source)

    def add(self, source: Source) -> None:
        for index, rule in enumerate(self.rules):
            if matches_all(rule.source_matchers, source.scope):
                key = (index, tuple(source.scope.get(label, "") for label in rule.equal))
                self._index.setdefault(key, []).append(source)

    def cause(self, fingerprint: str, scope: Mapping[str, str]) -> tuple[int, Source] | None:
        """The first rule and firing source that inhibit this alert, if any."""
        name = scope.get("alertname", "")
        for index, rule in enumerate(self.rules):
            targets = self._targets[index]
            if (targets is not None and name not in targets) or not matches_all(rule.target_matchers, scope):
                continue
            key = (index, tuple(scope.get(label, "") for label in rule.equal))
            for source in self._index.get(key, ()):
                if source.fingerprint != fingerprint:
                    return index, source
        return None

    def mutes(self, fingerprint: str, labels: Mapping[str, str], now: float) -> Mute | None:
        found = self.cause(fingerprint, labels)
        if found is None:
            return None
        index, source = found
        rule = self.rules[index]
        name = rule.name or f"inhibit_rules[{index}]"
        return Mute("inhibited", name, rule.comment or f"inhibited by rule {name}", source.fingerprint)
