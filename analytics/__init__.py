"""Analytics: consumes telemetry, kernel-log and training events, scores them and publishes Detections.

Its one interface is :class:`vigil.analytics.service.AnalyticsService` (``step``, ``run``, ``close``,
``health``), a consumer group over the telemetry, logs and training topics that publishes to the
detections topic and snapshots detector state per partition. Inside: ``engine`` (bus-free core),
``slots`` (series → state-array slots, poll frames ordered in rounds), ``detectors/`` (``zscore``,
``threshold``, ``xid``, ``training``, created by name from a registry; ``zscore`` runs the library's
models), ``models/`` (the detector library: API, robust z, decision layer, model registry),
``state`` (versioned snapshots) and ``bench`` (decode + score throughput without a broker).
"""
