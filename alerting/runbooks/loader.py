"""Runbook files: YAML validated by ``runbook.schema.json``, then by what only code can check.

Every error names the file, the line and the key path (``xid-79.yaml:14: steps[2].action: unknown
action 'slurm.drian'``): the document is composed first (PyYAML's node graph keeps each node's line),
so a key path found by ``jsonschema`` or by a check below maps back to the line it was written on.
Checks beyond the schema: each step's action is registered (or an alias of one), its parameters
are safe templates and, rendered with placeholder labels, valid against the action's own schema; a
destructive action has an ``approval`` guard; matchers parse; runbook names are unique.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema
import yaml
from vigil.alerting.matchers import parse_matchers
from vigil.alerting.runbooks.actions import ActionSet
from vigil.alerting.runbooks.config import DEFAULT_COUNTERS
from vigil.alerting.runbooks.model import AutoApproval, Guards, OnFailure, Runbook, Step, Verify
from vigil.alerting.runbooks.templates import check_value, fields_of

from vigil.config import parse_duration, safe_load_bounded
from vigil.errors import ConfigError

KeyPath = tuple[str | int, ...]
_PACKAGE = "vigil.alerting.runbooks"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key or '(top)'}: {self.message}"


class RunbookError(ConfigError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@cache
def schema() -> dict[str, Any]:
    text = resources.files(_PACKAGE).joinpath("runbook.schema.json").read_text()
    return cast(dict[str, Any], json.loads(text))


def key_text(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Lines:
    """Key path -> line (1-based) of the node written there."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[KeyPath, int] = {}
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self._walk(value, (*path, str(key.value)))
                self.lines[(*path, str(key.value))] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def line(self, path: KeyPath) -> int:
        while path not in self.lines and path:
            path = path[:-1]  # a missing key: the line of the mapping that lacks it
        return self.lines.get(path, 1)


def load_text(text: str, name: str, actions: ActionSet) -> Runbook:
    """One runbook from YAML text; raises :class:`RunbookError` with every problem found."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = safe_load_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RunbookError([Problem(name, line, "", f"not valid YAML: {exc}")]) from exc
    lines = _Lines(root)
    problems = [
        Problem(name, lines.line(tuple(e.absolute_path)), key_text(e.absolute_path), e.message)
        for e in sorted(jsonschema.Draft202012Validator(schema()).iter_errors(data), key=lambda e: list(e.path))
    ]
    if not problems:
        problems = [Problem(name, lines.line(path), key_text(path), msg) for path, msg in _semantic(data, actions)]
    if problems:
        raise RunbookError(problems)
    return _build(data, name)


def load_file(path: Path, actions: ActionSet) -> Runbook:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RunbookError([Problem(str(path), 1, "", f"cannot read: {exc.strerror}")]) from exc
    return load_text(text, str(path), actions)


def load_dir(folder: Path | None, actions: ActionSet, packaged: bool = True) -> dict[str, Runbook]:
    """The packaged runbooks, then ``folder``'s ``*.yaml`` (a user's runbook replaces a packaged one of
    the same name). Every problem in every file is reported together."""
    found: dict[str, Runbook] = {}
    problems: list[Problem] = []
    sources: list[tuple[str, str]] = []
    if packaged:
        files = sorted(resources.files(_PACKAGE).iterdir(), key=lambda f: f.name)
        sources += [(f"runbooks/{f.name}", f.read_text()) for f in files if f.name.endswith(".yaml")]
    user: list[tuple[str, str]] = []
    if folder is not None:
        if not folder.is_dir():
            raise RunbookError([Problem(str(folder), 1, "", "not a folder")])
        user = [(str(p), p.read_text()) for p in sorted(folder.glob("*.y*ml"))]
    for index, (name, text) in enumerate([*sources, *user]):
        try:
            runbook = load_text(text, name, actions)
        except RunbookError as exc:
            problems += exc.problems
            continue
        if runbook.name in found and index >= len(sources) and found[runbook.name].source.startswith("runbooks/"):
            found[runbook.name] = runbook  # the user's runbook replaces the packaged one
        elif runbook.name in found:
            other = found[runbook.name].source
            problems.append(Problem(name, 1, "name", f"runbook {runbook.name!r} is also in {other}"))
        else:
            found[runbook.name] = runbook
    if problems:
        raise RunbookError(problems)
    return found


# ----------------------------------------------------------------------------- checks beyond the schema


def _semantic(data: Mapping[str, Any], actions: ActionSet) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    out += _matchers(data.get("match"), ("match",))
    steps = list(enumerate(data.get("steps") or []))
    for index, step in steps:
        out += _step(step, ("steps", index), actions)
    verify = data.get("verify") or {}
    if verify:
        out += _template(verify.get("node"), ("verify", "node"))
        command = (verify.get("checks") or {}).get("health_command", {}).get("command")
        out += _template(command, ("verify", "checks", "health_command", "command"))
        for index, step in enumerate(verify.get("on_success") or []):
            out += _step(step, ("verify", "on_success", index), actions)
    return out


def _step(step: Mapping[str, Any], path: KeyPath, actions: ActionSet) -> list[tuple[KeyPath, str]]:
    name = step["action"]
    if name not in actions:
        return [((*path, "action"), f"unknown action {name!r} (known: {', '.join(actions.names())})")]
    action = actions.get(name)
    out = _matchers(step.get("when"), (*path, "when"))
    params = step.get("params") or {}
    for key, value in params.items():
        out += _template(value, (*path, "params", key))
    if not out:
        sample = _placeholders(params)
        for error in jsonschema.Draft202012Validator(action.schema).iter_errors(sample):
            where = (*path, "params", *error.absolute_path)
            out.append((where, f"{error.message} (action {action.name})"))
    guards = step.get("guards") or {}
    if action.destructive and guards.get("approval") in (None, "none"):
        why = "missing" if "approval" not in guards else "'none'"
        out.append(
            (
                (*path, "guards", "approval"),
                f"{action.name} is destructive: an approval guard is required ({why}); "
                "write approval: required, or {auto: {max: N, window: D}}",
            )
        )
    return out


def _placeholders(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with each template field filled by a placeholder, to check them against the schema."""
    labels = {name: "0" for name in fields_of(params)}  # "0" fits a name, a number and an index alike
    return {k: _fill(v, labels) for k, v in params.items()}


def _fill(value: Any, labels: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(labels)
    if isinstance(value, list):
        return [_fill(v, labels) for v in value]
    if isinstance(value, Mapping):
        return {k: _fill(v, labels) for k, v in value.items()}
    return value


def _template(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    try:
        check_value(value)
    except ValueError as exc:
        return [(path, f"bad template: {exc}")]
    return []


def _matchers(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    for index, text in enumerate(value or []):
        try:
            parse_matchers([text])
        except ValueError as exc:
            out.append(((*path, index), str(exc)))
    return out


# ----------------------------------------------------------------------------- validated data -> model


def _build(data: Mapping[str, Any], source: str) -> Runbook:
    verify = data.get("verify")
    return Runbook(
        name=data["name"],
        description=data.get("description", ""),
        match=parse_matchers(data["match"]),
        steps=tuple(_build_step(s) for s in data["steps"]),
        verify=_build_verify(verify) if verify else None,
        on_failure=cast(OnFailure, data.get("on_failure", "escalate")),
        source=source,
    )


def _build_step(raw: Mapping[str, Any]) -> Step:
    guards = raw.get("guards") or {}
    approval = guards.get("approval", "none")
    auto = None
    if isinstance(approval, Mapping):
        spec = approval["auto"]
        auto, approval = AutoApproval(int(spec["max"]), parse_duration(spec["window"])), "auto"
    cooldown = guards.get("cooldown")
    return Step(
        name=raw["name"],
        action=raw["action"],
        params=dict(raw.get("params") or {}),
        when=parse_matchers(raw.get("when") or []),
        guards=Guards(
            approval=approval,
            auto=auto,
            blast_radius=bool(guards.get("blast_radius", True)),
            cooldown=parse_duration(cooldown) if cooldown is not None else None,
        ),
        retries=int(raw.get("retries", 2)),
        timeout=parse_duration(raw.get("timeout", 120)),
    )


def _build_verify(raw: Mapping[str, Any]) -> Verify:
    checks = raw.get("checks") or {}
    xid = checks.get("no_new_xid")
    health = checks.get("health_command") or {}
    return Verify(
        node=raw["node"],
        timeout=parse_duration(raw["timeout"]),
        gpus=(checks.get("telemetry_back") or {}).get("gpus"),
        telemetry_back="telemetry_back" in checks,
        hold=parse_duration(xid["hold"]) if xid else None,
        counters=tuple((checks.get("counters_unchanged") or {}).get("metrics", DEFAULT_COUNTERS))
        if "counters_unchanged" in checks
        else (),
        health_command=tuple(health.get("command", ())),
        health_timeout=parse_duration(health.get("timeout", 300)),
        on_success=tuple(_build_step(s) for s in raw.get("on_success") or []),
    )
