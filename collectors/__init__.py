"""Collectors: read hardware, host, log and training sources and publish events; nothing else.

The interface is the one-method ``Collector`` protocol (``collect()``) run by a runner that owns
scheduling, batching and buffering. The fleet simulator (``vigil.collectors.sim``) is the demo
source behind ``vigil up``.
"""
