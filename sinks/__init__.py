"""Sinks: Vigil's topics written into the stores operators already query (InfluxDB, VictoriaMetrics).

Its one interface is :class:`vigil.sinks.service.InfluxSink` (``step``, ``run``, ``close``, ``health``),
a consumer group over the telemetry and detections topics on the kernel's commit protocol that writes
line protocol and commits an offset only once the store confirmed the lines below it. Inside:
``config`` (the ``sink:`` section), ``lines`` (events as line protocol, vectorised for telemetry) and
``store`` (confirmed writes over influxdb-client, v2 and v1 APIs).
"""
