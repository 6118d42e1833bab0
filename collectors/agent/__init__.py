"""The node agent: runs the configured collectors and never loses a batch.

Per tick it runs the collectors that are due (each on its own thread, interval and jitter), merges
their samples into one ``TelemetryBatch`` per host, and hands every record to a delivery buffer
that keeps it (memory, then append-only segment files) until the broker acknowledges it, in order.
The one interface is :class:`~vigil.collectors.agent.agent.Agent` (``run(connect, stop)``,
``once()``, ``health()``), configured by :class:`~vigil.collectors.agent.config.AgentConfig`
(``agent:`` in the config file); ``vigil agent`` wires it to Kafka.
"""

from vigil.collectors.agent.agent import Agent, OnceResult
from vigil.collectors.agent.config import AgentConfig, BufferConfig, CollectorSettings
from vigil.collectors.agent.delivery import ProducerFactory

__all__ = ["Agent", "AgentConfig", "BufferConfig", "CollectorSettings", "OnceResult", "ProducerFactory"]
