"""Step parameters as templates over an incident's labels, with alerting's safe template rules.

A field is a plain name (``{host}``, ``{gpu_index}``, ``{incident}``); attribute or index access could
reach into Python objects, so ``check_template`` refuses it (the rule prediction templates follow).
Unlike an alert's summary, a remediation parameter must never be guessed: a label the incident lacks
makes the step unplannable (:class:`MissingLabel`), so nothing ever drains a node called ``{host}``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from vigil.alerting.config import check_template


class MissingLabel(KeyError):
    """A template names a label the incident does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"the incident has no label {self.name!r}"


class _Strict(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if str(key) not in kwargs or kwargs[str(key)] in (None, ""):
            raise MissingLabel(str(key))
        return kwargs[str(key)]


def render(template: str, labels: Mapping[str, Any]) -> str:
    """Render one template; raises :class:`MissingLabel` for a label that is absent or empty."""
    return _Strict().vformat(template, (), labels)


def render_value(value: Any, labels: Mapping[str, Any]) -> Any:
    """Strings are rendered, lists and mappings recursively; other values pass as they are."""
    if isinstance(value, str):
        return render(value, labels)
    if isinstance(value, list | tuple):
        return [render_value(v, labels) for v in value]
    if isinstance(value, Mapping):
        return {k: render_value(v, labels) for k, v in value.items()}
    return value


def check_value(value: Any) -> None:
    """Raise ``ValueError`` (naming the problem) when a string inside ``value`` is not a safe template."""
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, list | tuple):
        for item in value:
            check_value(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            check_value(item)


def fields_of(value: Any) -> set[str]:
    """The label names a (checked) template value refers to."""
    if isinstance(value, str):
        return {name for _, name, _, _ in string.Formatter().parse(value) if name}
    if isinstance(value, list | tuple):
        return set().union(*(fields_of(v) for v in value)) if value else set()
    if isinstance(value, Mapping):
        return set().union(*(fields_of(v) for v in value.values())) if value else set()
    return set()
