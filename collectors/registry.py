"""Collectors by name, imported only when configured (so the agent on a GPU-less node never imports
NVML, and an optional dependency missing breaks only the collector that needs it).

Each module named here exposes ``create(options, context) -> Collector``: ``options`` is that
collector's mapping from the config file (``agent.collectors.<name>``, minus the runner's own keys
``interval``/``jitter``/``enabled``), validated with :func:`vigil.config.validate` and the prefix
``agent.collectors.<name>`` so a bad key fails at start naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from vigil.collectors.base import Collector, CollectorContext

from vigil.errors import ConfigError

COLLECTORS: dict[str, str] = {
    "nvml": "vigil.collectors.gpu.nvml",
    "dcgm": "vigil.collectors.gpu.dcgm",
    "nvidia_smi": "vigil.collectors.gpu.nvidia_smi",
    "kernel_log": "vigil.collectors.kernel.follower",
    "host": "vigil.collectors.host.system",
    "smart": "vigil.collectors.host.smart",
    "ipmi": "vigil.collectors.host.ipmi",
    "infiniband": "vigil.collectors.host.infiniband",
    "training_scrape": "vigil.collectors.training.scrape",
    "sim_gpu": "vigil.collectors.sim.gpu_source",
}


def create_collector(name: str, options: Mapping[str, Any], context: CollectorContext) -> Collector:
    try:
        module_name = COLLECTORS[name]
    except KeyError:
        known = ", ".join(sorted(COLLECTORS))
        raise ConfigError(f"agent.collectors: unknown collector {name!r} (known: {known})") from None
    module = importlib.import_module(module_name)
    collector: Collector = module.create(dict(options), context)
    return collector
