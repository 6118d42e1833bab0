"""Analytics: consumes telemetry, kernel-log and training events, scores them and publishes Detections.

Its one interface is :class:`vigil.analytics.service.AnalyticsService` (``step``, ``run``, ``close``,
``health``), a consumer group over the telemetry, logs and training topics that publishes to the
detections and predictions topics and snapshots stage state per partition. The map:

- ``models/``: the bus-free library (detectors, decision layer, calibration, predictors, the
  registry and the conformance checks); it imports nothing else from ``analytics``;
- ``stages/``: the live stages that run library models over the stream, the slot table and its
  round-ordered frames, the engine that drives them, and the snapshot store;
- ``service.py``: the consumer loop and its commit protocol; ``config.py``: the ``analytics:`` section;
- ``eval/``: benchmarks and evaluation on public data (``vigil eval``, ``vigil bench detectors``).
"""
