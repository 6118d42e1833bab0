"""Collectors from the agent's config: by registry name, or from a site's own module."""

from __future__ import annotations

import importlib

from vigil.collectors.agent.config import AgentConfig, CollectorSettings
from vigil.collectors.base import Collector, CollectorContext
from vigil.collectors.registry import create_collector

from vigil.config import validate
from vigil.errors import ConfigError


def create_collectors(config: AgentConfig, context: CollectorContext) -> dict[str, Collector]:
    """Every enabled collector, created at start so a bad option fails the agent naming its key."""
    return {name: _create(name, spec, context) for name, spec in config.enabled().items()}


def _create(name: str, spec: CollectorSettings, context: CollectorContext) -> Collector:
    where = f"agent.collectors.{name}"
    try:
        if spec.module is None:
            return create_collector(name, spec.options, context)
        module = importlib.import_module(spec.module)
        collector: Collector = module.create(spec.options, context)
        return collector
    except ConfigError:
        raise
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot load the collector ({exc})") from exc
    except Exception as exc:  # a collector that cannot even be created is a start-up error, named
        raise ConfigError(f"{where}: cannot create the collector: {type(exc).__name__}: {exc}") from exc


def select_collectors(config: AgentConfig, names: str) -> AgentConfig:
    """``--collectors host,nvml`` (or ``name=module.path`` for a site's own): run exactly these,
    with their settings from the config file where it has them."""
    chosen: dict[str, dict[str, object]] = {}
    for item in (part.strip() for part in names.split(",")):
        if not item:
            continue
        name, _, module = item.partition("=")
        base = config.collectors.get(name.strip())
        entry: dict[str, object] = base.model_dump() if base is not None else {}
        entry["enabled"] = True
        if module:
            entry["module"] = module.strip()
        chosen[name.strip()] = entry
    if not chosen:
        raise ConfigError("--collectors: no collector named")
    data = config.model_dump()
    data["collectors"] = chosen
    return validate(AgentConfig, data, prefix="agent")
