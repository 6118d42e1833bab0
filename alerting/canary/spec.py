"""Probe definitions: YAML files validated by ``probe.schema.json`` (and golden sets by
``golden.schema.json``), then by what only code can check. Every error names the file, the line and
the key (``probes/digits.yaml:12: probes[0].baseline: no arm named 'v3' (arms: v1, serving)``).

A folder holds probe files (``*.yaml``) and golden-set files (``*.golden.yaml``, read through a
probe's ``golden:``). A probe's *arms* are what each round asks:

- ``arms`` (+ ``baseline``): named endpoints or model versions, each judged against the baseline
  arm, e.g. the pinned previous version and the version clients get (``{name: serving}``: the
  unversioned path, whose version is read from the answer);
- ``nodes``: one arm per serving node (the endpoint holds ``{node}``), each judged against the
  other nodes pooled;
- neither: one arm, the endpoint as it is, judged against the hard floors only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import jsonschema
import referencing
import yaml
from vigil.alerting.canary.judge import Criteria, criteria_from
from vigil.alerting.runbooks.loader import Problem, _Lines, key_text

from vigil.config import parse_duration, safe_load_bounded
from vigil.errors import ConfigError

KeyPath = tuple[str | int, ...]
Protocol = Literal["oip_v2", "openai_chat", "openai_completions", "http_json"]
Mode = Literal["arms", "nodes", "single"]
_PACKAGE = "vigil.alerting.canary"
GOLDEN_SUFFIX = ".golden.yaml"
# What an item of each protocol must carry (one of each tuple).
_NEEDS: dict[str, tuple[str, ...]] = {
    "oip_v2": ("inputs",),
    "openai_chat": ("messages", "prompt"),
    "openai_completions": ("prompt",),
    "http_json": ("body",),
}
_FOREIGN: dict[str, tuple[str, ...]] = {
    "oip_v2": ("messages", "prompt", "response_format", "max_tokens", "stream", "path", "body"),
    "openai_chat": ("inputs", "output", "path", "body"),
    "openai_completions": ("inputs", "output", "messages", "path", "body"),
    "http_json": ("inputs", "output", "messages", "prompt", "response_format", "max_tokens", "stream"),
}


class ProbeError(ConfigError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    request: Mapping[str, Any]  # the protocol's fields as written (inputs, messages, prompt, body, ...)
    expect: Mapping[str, Any]
    select: str | None = None


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    endpoint: str
    version: str | None = None  # ask this version's path (oip_v2); None: whatever serves
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    interval: float = 60.0
    timeout: float = 10.0
    round_timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    protocol: Protocol
    model: str
    arms: tuple[Arm, ...]
    items: tuple[Item, ...]
    mode: Mode = "single"
    baseline: str | None = None
    server: str | None = None
    schedule: Schedule = field(default_factory=Schedule)
    request: Mapping[str, Any] = field(default_factory=dict)  # temperature, seed, max_tokens, headers
    criteria: Criteria = field(default_factory=Criteria)
    source: str = ""

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


@cache
def _registry() -> referencing.Registry[Any]:
    resources_ = [
        referencing.Resource.from_contents(json.loads(resources.files(_PACKAGE).joinpath(name).read_text()))
        for name in ("probe.schema.json", "golden.schema.json")
    ]
    return referencing.Registry().with_resources((r.id() or "", r) for r in resources_)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = _registry().get_or_retrieve(f"https://vigil.dev/schemas/{name}").value.contents
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _document(text: str, name: str, schema: str) -> tuple[Any, _Lines]:
    """Parse and schema-check one YAML document; raises ProbeError naming file, line and key."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = safe_load_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ProbeError([Problem(name, mark.line + 1 if mark else 1, "", f"not valid YAML: {exc}")]) from exc
    lines = _Lines(root)
    errors = sorted(_validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise ProbeError(
            [Problem(name, lines.line(tuple(e.absolute_path)), key_text(e.absolute_path), e.message) for e in errors]
        )
    return data, lines


def load_text(text: str, name: str, folder: Path | None = None) -> list[Probe]:
    """The probes of one probe file (``folder``: where its golden files are)."""
    data, lines = _document(text, name, "canary-probe.schema.json")
    probes: list[Probe] = []
    problems: list[Problem] = []
    for index, raw in enumerate(data["probes"]):
        path: KeyPath = ("probes", index)
        items_raw, golden_problems = _items(raw, folder)
        problems += golden_problems
        found = [(p, m) for p, m in _semantic(raw, items_raw or []) if not golden_problems]
        problems += [Problem(name, lines.line((*path, *p)), key_text((*path, *p)), m) for p, m in found]
        if not problems:
            probes.append(_build(raw, items_raw or [], name))
    seen: dict[str, int] = {}
    for index, raw in enumerate(data["probes"]):
        if raw["name"] in seen:
            where = ("probes", index, "name")
            message = f"probe {raw['name']!r} is defined twice"
            problems.append(Problem(name, lines.line(where), key_text(where), message))
        seen[raw["name"]] = index
    if problems:
        raise ProbeError(problems)
    return probes


def _items(raw: Mapping[str, Any], folder: Path | None) -> tuple[list[Any] | None, list[Problem]]:
    if "golden" not in raw:
        return raw.get("items"), []
    path = (folder or Path(".")) / raw["golden"]
    try:
        text = path.read_text()
    except OSError as exc:
        return None, [Problem(str(path), 1, "", f"golden set cannot be read: {exc.strerror}")]
    try:
        data, lines = _document(text, str(path), "golden.schema.json")
    except ProbeError as exc:
        return None, exc.problems
    problems = [
        Problem(str(path), lines.line(("items", *p)), key_text(("items", *p)), m)
        for p, m in _item_checks(data["items"], raw["protocol"])
    ]
    return data["items"], problems


def load_paths(paths: Iterable[Path]) -> list[Probe]:
    """Every probe in these files and folders (``*.yaml`` but ``*.golden.yaml``); names must be unique."""
    probes: list[Probe] = []
    problems: list[Problem] = []
    for path in paths:
        for file in _files(path):
            try:
                text = file.read_text()
            except OSError as exc:
                problems.append(Problem(str(file), 1, "", f"cannot read: {exc.strerror}"))
                continue
            try:
                probes += load_text(text, str(file), file.parent)
            except ProbeError as exc:
                problems += exc.problems
    names = [p.name for p in probes]
    for probe in probes:
        if names.count(probe.name) > 1:
            problems.append(Problem(probe.source, 1, "probes", f"probe {probe.name!r} is also defined elsewhere"))
    if problems:
        raise ProbeError(problems)
    return probes


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return [f for f in sorted(path.glob("*.y*ml")) if not f.name.endswith(GOLDEN_SUFFIX)]
    if not path.exists():
        raise ProbeError([Problem(str(path), 1, "", "no such file or folder")])
    return [path]


# ----------------------------------------------------------------------------- checks beyond the schema


def _semantic(raw: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    if ("golden" in raw) == ("items" in raw):
        out.append(((), "give exactly one of golden (a file) and items (inline)"))
    if "arms" in raw and "nodes" in raw:
        out.append((("nodes",), "arms and nodes exclude each other"))
    out += _arm_checks(raw)
    endpoint = raw["endpoint"]
    if "nodes" in raw and "{node}" not in endpoint:
        out.append((("endpoint",), "with nodes, the endpoint must hold {node}"))
    if "nodes" not in raw and re.search(r"[{}]", endpoint):
        out.append((("endpoint",), "braces are only for {node}, with nodes"))
    if "items" in raw:
        out += [(("items", *p), m) for p, m in _item_checks(items, raw["protocol"])]
    out += _schedule_checks(raw.get("schedule", {}))
    criteria = raw.get("criteria", {})
    if criteria.get("marginal_score", 50) > criteria.get("pass_score", 95):
        out.append((("criteria", "marginal_score"), "must not exceed pass_score"))
    return out


def _arm_checks(raw: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    arms = [a["name"] for a in raw.get("arms", [])]
    for index, name in enumerate(arms):
        if arms.index(name) != index:
            out.append((("arms", index, "name"), f"arm {name!r} is named twice"))
    if "baseline" in raw and raw["baseline"] not in arms:
        out.append((("baseline",), f"no arm named {raw['baseline']!r} (arms: {', '.join(arms) or 'none'})"))
    if len(arms) > 1 and "baseline" not in raw:
        out.append((("baseline",), "several arms need a baseline to be judged against"))
    return out


def _schedule_checks(schedule: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    times = {k: parse_duration(v) for k, v in schedule.items()}
    if times.get("round_timeout", 120.0) < times.get("timeout", 10.0):
        return [(("schedule", "round_timeout"), "must not be shorter than timeout")]
    return []


def _item_checks(items: Sequence[Mapping[str, Any]], protocol: str) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    ids = [i["id"] for i in items]
    for index, item in enumerate(items):
        if ids.index(item["id"]) != index:
            out.append(((index, "id"), f"item {item['id']!r} is listed twice"))
        if not any(k in item for k in _NEEDS[protocol]):
            out.append(((index,), f"a {protocol} item needs {' or '.join(_NEEDS[protocol])}"))
        out += [((index, k), f"not used by {protocol}") for k in _FOREIGN[protocol] if k in item]
        out += _expect_checks(item["expect"], (index, "expect"))
        if "response_format" in item:
            out += _schema_ok(item["response_format"], (index, "response_format"))
    return out


def _expect_checks(expect: Mapping[str, Any], path: KeyPath) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    if "regex" in expect:
        try:
            re.compile(expect["regex"])
        except re.error as exc:
            out.append(((*path, "regex"), f"not a regular expression: {exc}"))
    if "json_schema" in expect:
        out += _schema_ok(expect["json_schema"], (*path, "json_schema"))
    checkers = {"equals", "number", "regex", "contains", "json_schema", "reference"}
    if not checkers & set(expect):
        out.append((path, f"name a checker: {', '.join(sorted(checkers))}"))
    return out


def _schema_ok(schema: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [(path, f"not a valid JSON Schema: {exc.message}")]
    return []


# ----------------------------------------------------------------------------- validated data -> model


def _build(raw: Mapping[str, Any], items: Sequence[Mapping[str, Any]], source: str) -> Probe:
    endpoint = raw["endpoint"].rstrip("/")
    mode: Mode = "single"
    if "nodes" in raw:
        mode = "nodes"
        arms = tuple(Arm(n, endpoint.replace("{node}", n), node=n) for n in raw["nodes"])
    elif "arms" in raw:
        mode = "arms" if len(raw["arms"]) > 1 else "single"
        arms = tuple(Arm(a["name"], a.get("endpoint", endpoint).rstrip("/"), a.get("version")) for a in raw["arms"])
    else:
        arms = (Arm("serving", endpoint),)
    schedule = {k: parse_duration(v) for k, v in raw.get("schedule", {}).items()}
    return Probe(
        name=raw["name"],
        protocol=cast(Protocol, raw["protocol"]),
        model=raw["model"],
        arms=arms,
        items=tuple(_item(i) for i in items),
        mode=mode,
        baseline=raw.get("baseline") if mode == "arms" else None,
        server=raw.get("server"),
        schedule=Schedule(**schedule),
        request=dict(raw.get("request", {})),
        criteria=criteria_from(raw.get("criteria", {})),
        source=source,
    )


def _item(raw: Mapping[str, Any]) -> Item:
    request = {k: v for k, v in raw.items() if k not in ("id", "expect", "select")}
    return Item(raw["id"], request, dict(raw["expect"]), raw.get("select"))
