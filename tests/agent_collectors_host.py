"""``module: tests.agent_collectors_host``: the psutil host collector of ``tests.agent_collectors``."""

from __future__ import annotations

from tests.agent_collectors import create_host as create

__all__ = ["create"]
