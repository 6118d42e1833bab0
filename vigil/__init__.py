"""Vigil's shared kernel: the event model, codec, topics, bus, config and the catalogs.

Services (``vigil.collectors``, ``vigil.analytics``, ``vigil.alerting``) build on this package and
talk to each other only through topics; the kernel never imports a service.
"""

__version__ = "0.1.0"
