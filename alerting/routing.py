"""The routing tree, with Alertmanager's semantics, written in Alertmanager's YAML shape.

A route matches an alert when all its matchers do (the root matches everything). Children are tried
in order; the first that matches takes the alert unless it says ``continue: true``, in which case
the next children are tried too; a route none of whose children match keeps the alert itself. Each
route inherits from its parent what it does not set: ``receiver``, ``group_by``, ``group_wait``,
``group_interval``, ``repeat_interval``, Vigil's ``critical_group_wait`` and ``escalation``.
``group_by: ["..."]`` groups by every label.

Vigil differs from Alertmanager in one deliberate way: a notification group never spans two
incidents (an incident is the unit that pages), so ``group_by`` can only split an incident's alerts
into several notifications, never merge incidents; with the default ``group_by: []`` each incident is
one group per route. And ``critical_group_wait`` (default 0s) replaces ``group_wait`` while the group
holds a critical alert, so a critical incident's first page leaves at once and its followers are
batched into the next ``group_interval``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator
from vigil.alerting.matchers import Matcher, Matchers, from_maps, matches_all
from vigil.alerting.pipeline.base import RouteMatch

from vigil.config import Duration, FrozenModel, KeyProblem, PositiveDuration

GroupBy = Annotated[list[str], Field(max_length=64)]


class RouteConfig(FrozenModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)

    receiver: str | None = None
    group_by: GroupBy | None = None
    continue_: bool = Field(False, alias="continue")
    matchers: Matchers = ()
    match: dict[str, str] | None = None  # Alertmanager's older equality map
    match_re: dict[str, str] | None = None  # and its regex map
    group_wait: Duration | None = None
    critical_group_wait: Duration | None = None  # Vigil: group_wait while the group holds a critical alert
    group_interval: PositiveDuration | None = None
    repeat_interval: PositiveDuration | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    escalation: str | None = None  # Vigil: an escalation policy's name
    routes: list[RouteConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _legacy_maps(self) -> RouteConfig:
        try:
            legacy = from_maps(self.match, self.match_re)
        except ValueError as exc:
            raise ValueError(f"match_re: {exc}") from None
        if legacy:  # folded into matchers (and cleared, so a dump and reload does not add them twice)
            object.__setattr__(self, "matchers", (*self.matchers, *legacy))
            object.__setattr__(self, "match", None)
            object.__setattr__(self, "match_re", None)
        return self

    def walk(self, path: tuple[str | int, ...] = ("route",)) -> Iterator[tuple[tuple[str | int, ...], RouteConfig]]:
        """Every route with its key path (``("route", "routes", 1)``), parents first."""
        yield path, self
        for index, child in enumerate(self.routes):
            yield from child.walk((*path, "routes", index))


ROOT_DEFAULTS: dict[str, Any] = {
    "group_by": [],
    "group_wait": 30.0,
    "critical_group_wait": 0.0,
    "group_interval": 300.0,
    "repeat_interval": 4 * 3600.0,
}


@dataclass(frozen=True, slots=True)
class Route:
    """A route with its inherited settings resolved, ready to match."""

    id: str
    matchers: tuple[Matcher, ...]
    settings: RouteMatch
    continue_: bool
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    children: tuple[Route, ...] = field(default=())

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that take these labels (Alertmanager's ``Route.Match``)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.children:
            taken = child.match(labels)
            found.extend(taken)
            if taken and not child.continue_:
                break
        return found or [self]

    def walk(self) -> Iterator[Route]:
        yield self
        for child in self.children:
            yield from child.walk()


def build_tree(config: RouteConfig) -> Route:
    """The root route from its config: the root's unset settings take Vigil's defaults."""
    return _build(config, "root", None)


def _build(config: RouteConfig, route_id: str, parent: RouteMatch | None) -> Route:
    def pick(name: str) -> Any:
        own = getattr(config, name)
        if own is not None:
            return own
        return getattr(parent, name) if parent is not None else ROOT_DEFAULTS.get(name)

    if config.group_by is not None:
        group_by: tuple[str, ...] | None = None if "..." in config.group_by else tuple(config.group_by)
    else:  # inherited as resolved (None stays "every label")
        group_by = parent.group_by if parent is not None else tuple(ROOT_DEFAULTS["group_by"])
    settings = RouteMatch(
        route=route_id,
        receiver=str(pick("receiver")),
        group_by=group_by,
        group_wait=pick("group_wait"),
        critical_group_wait=pick("critical_group_wait"),
        group_interval=pick("group_interval"),
        repeat_interval=pick("repeat_interval"),
        escalation=pick("escalation"),
    )
    children = tuple(_build(child, f"{route_id}/{i}", settings) for i, child in enumerate(config.routes))
    return Route(
        id=route_id,
        matchers=config.matchers,
        settings=settings,
        continue_=config.continue_,
        mute_time_intervals=tuple(config.mute_time_intervals),
        active_time_intervals=tuple(config.active_time_intervals),
        children=children,
    )


def check_tree(route: RouteConfig, receivers: set[str], intervals: set[str], policies: set[str]) -> list[KeyProblem]:
    """Problems (key path, message, value) a tree has against the receivers, time intervals and escalation
    policies defined beside it: the root needs a receiver and no matchers; every name must exist."""
    problems: list[KeyProblem] = []
    if route.receiver is None:
        problems.append((("route", "receiver"), "the root route needs a receiver", None))
    if route.matchers:
        problems.append((("route", "matchers"), "the root route matches every alert: it takes no matchers", None))
    for path, node in route.walk():
        if node.receiver is not None and node.receiver not in receivers:
            known = ", ".join(sorted(receivers)) or "none"
            problems.append(
                ((*path, "receiver"), f"unknown receiver {node.receiver!r} (known: {known})", node.receiver)
            )
        for key in ("mute_time_intervals", "active_time_intervals"):
            for index, name in enumerate(getattr(node, key)):
                if name not in intervals:
                    problems.append(((*path, key, index), f"unknown time interval {name!r}", name))
        if node.escalation is not None and node.escalation not in policies:
            problems.append(((*path, "escalation"), f"unknown escalation policy {node.escalation!r}", node.escalation))
    return problems
