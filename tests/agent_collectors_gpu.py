"""``module: tests.agent_collectors_gpu``: the GPU-like load collector of ``tests.agent_collectors``."""

from __future__ import annotations

from tests.agent_collectors import create_gpu_like as create

__all__ = ["create"]
