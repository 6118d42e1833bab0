"""The detector library: score models with River's shape, independent of the bus.

``base.Detector`` is the API every model implements; ``decide`` turns scores into decisions with a
reason; the registry creates models by name from config. The analytics service's stage adapters in
``vigil.analytics.detectors`` run these models over the live stream.
"""
