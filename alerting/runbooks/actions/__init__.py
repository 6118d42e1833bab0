"""Registered remediation actions. The one interface is :class:`~.base.Action` (``check``, ``execute``,
``verify``, a parameter schema); :class:`ActionSet` is the set one process runs with, built from config.

Runbooks name an action directly (``slurm.drain``) or by an alias (``node.drain``) that the config
binds to the cluster's scheduler, so one runbook serves Slurm, Kubernetes and the simulated fleet:
``remediation.aliases: {node.drain: kubernetes.drain}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vigil.alerting.runbooks.actions.base import Action, ActionResult, Params

from vigil.errors import ConfigError

# The scheduler-neutral names the shipped runbooks and the XID policy use, and their default binding.
DEFAULT_ALIASES: dict[str, str] = {
    "node.drain": "slurm.drain",
    "node.resume": "slurm.resume",
    "job.requeue": "slurm.requeue",
    "job.restart": "slurm.restart",
    "job.checkpoint": "slurm.signal",
}


class ActionSet:
    """The actions one process can run, by name, and the aliases that point at them."""

    def __init__(self, actions: Iterable[Action], aliases: Mapping[str, str] | None = None) -> None:
        self._actions: dict[str, Action] = {}
        for action in actions:
            if action.name in self._actions:
                raise ValueError(f"action {action.name!r} is registered twice")
            self._actions[action.name] = action
        self.aliases = {**DEFAULT_ALIASES, **(aliases or {})}
        for alias in self.aliases:
            if alias in self._actions:
                raise ConfigError(f"remediation.aliases.{alias}: is already an action's own name")

    def resolve(self, name: str) -> str:
        """The registered name behind ``name`` (an alias or a name); raises KeyError if neither."""
        real = self.aliases.get(name, name)
        if real not in self._actions:
            raise KeyError(name)
        return real

    def get(self, name: str) -> Action:
        return self._actions[self.resolve(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.aliases.get(name, name) in self._actions

    def names(self) -> list[str]:
        """Every name a runbook may use: registered actions and aliases that resolve."""
        return sorted({*self._actions, *(a for a, n in self.aliases.items() if n in self._actions)})


__all__ = ["DEFAULT_ALIASES", "Action", "ActionResult", "ActionSet", "Params"]


class Wait:
    """``wait {seconds}``: a pause between steps (let a job write its checkpoint). The executor keeps the
    step's start in the store and completes it once the time has passed, so a restart waits only what is
    left and the runner never sleeps on it."""

    name = "wait"
    schema = {
        "type": "object",
        "properties": {"seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}},
        "required": ["seconds"],
        "additionalProperties": False,
    }
    destructive = False
    target: str | None = None
    undo: str | None = None

    def check(self, params: Params, idempotency_key: str) -> bool:
        return False

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        return ActionResult.done(f"waited {float(params['seconds']):g}s")

    def verify(self, params: Params) -> ActionResult:
        return ActionResult.done()
