"""Label matchers with Alertmanager's semantics, shared by routes, inhibition, silences and maintenance.

A matcher is ``name op value`` with ``op`` one of ``=``, ``!=``, ``=~``, ``!~``; regular expressions
are anchored at both ends (``=~ "gpu.*"`` does not match ``"my-gpu"``), and a label an alert lacks
reads as the empty string, so ``team=""`` matches alerts without a team and ``team!=""`` those with
one. Written as Alertmanager writes them: a string (``'severity =~ "warning|critical"'``, the value
quoted or not), a list of such strings, the brace form ``{a="b", c!~"d"}``, or the older maps
``match: {a: b}`` and ``match_re: {a: "b.*"}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, PlainSerializer

Op = Literal["=", "!=", "=~", "!~"]
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER = re.compile(rf'^\s*(?P<name>{_NAME}|"[^"]*")\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^"]*?)\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, op: Op, value: str) -> Matcher:
        """Raises ``ValueError`` naming the problem for a bad regular expression."""
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})", re.DOTALL)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self._regex is not None  # set by make() for both regex operators
        hit = self._regex.fullmatch(got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Matcher:
        op = str(data["op"])
        if op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"unknown operator {op!r}")
        return cls.make(str(data["name"]), op, str(data["value"]))  # type: ignore[arg-type]


def parse_matcher(text: str) -> Matcher:
    """One matcher as Alertmanager writes it: ``name op value`` with the value quoted or bare."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(f"not a matcher: {text!r} (expected name=value, name!=value, name=~regex or name!~regex)")
    name, op, value = found.group("name"), found.group("op"), found.group("value")
    if name.startswith('"'):
        name = name[1:-1]
    if value.startswith('"'):
        value = json.loads(value)  # a quoted value: Go's escapes are JSON's for what matchers use
    return Matcher.make(name, op, value)  # type: ignore[arg-type]


def parse_matchers(value: Any) -> tuple[Matcher, ...]:
    """A list of matcher strings (each may itself be a brace list), one string, or dicts from ``to_json``."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence):
        raise ValueError("matchers are a list of strings such as 'severity=\"critical\"'")
    out: list[Matcher] = []
    for item in value:
        if isinstance(item, Matcher):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(Matcher.from_json(item))
        elif isinstance(item, str):
            out.extend(parse_matcher(part) for part in _split_braces(item))
        else:
            raise ValueError(f"not a matcher: {item!r}")
    return tuple(out)


def from_maps(match: Mapping[str, Any] | None, match_re: Mapping[str, Any] | None) -> tuple[Matcher, ...]:
    """Alertmanager's older ``match`` (equality) and ``match_re`` (regex) maps."""
    eq = [Matcher.make(str(k), "=", str(v)) for k, v in (match or {}).items()]
    return (*eq, *(Matcher.make(str(k), "=~", str(v)) for k, v in (match_re or {}).items()))


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _split_braces(text: str) -> list[str]:
    """``{a="b", c=~"d,e"}`` into its matchers (commas inside quotes are kept); plain text as is."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return [text]
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in stripped[1:-1]:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


# In a config model: parsed from any written form; dumped as Alertmanager writes them, so a dumped
# config (the one `vigil up` hands its children) loads back.
Matchers = Annotated[
    tuple[Matcher, ...],
    BeforeValidator(parse_matchers),
    PlainSerializer(lambda ms: [str(m) for m in ms], return_type=list[str]),
]
