"""The topic registry: one name per event stream, its key, and its dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    stream: str  # short name used in config: telemetry, logs, ...
    name: str  # full topic name on the broker
    key: str  # what the record key is (for humans and docs)
    partitions: int

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


STREAMS: dict[str, str] = {
    "telemetry": "host",
    "logs": "host",
    "training": "job",
    "detections": "series",
    "predictions": "entity",
    "alerts": "fingerprint",
    "probes": "target",
    "remediation": "run id",
    "actions": "host",  # ActionRequest: what an executor outside alerting (the simulated fleet) must do
    "action_reports": "request id",  # ActionReport: what it did
    "groundtruth": "fault id",
}

DEFAULT_PARTITIONS: dict[str, int] = {"telemetry": 8, "logs": 4, "training": 4}


class Topics:
    """Resolves stream names to topic names under a prefix (``vigil.telemetry.v1``)."""

    def __init__(self, prefix: str = "vigil", partitions: dict[str, int] | None = None, version: int = 1) -> None:
        counts = {**DEFAULT_PARTITIONS, **(partitions or {})}
        self._specs = {
            stream: TopicSpec(stream, f"{prefix}.{stream}.v{version}", key, counts.get(stream, 1))
            for stream, key in STREAMS.items()
        }

    def __getitem__(self, stream: str) -> TopicSpec:
        return self._specs[stream]

    def name(self, stream: str) -> str:
        return self._specs[stream].name

    def all(self) -> list[TopicSpec]:
        return list(self._specs.values())

    @property
    def telemetry(self) -> str:
        return self.name("telemetry")

    @property
    def logs(self) -> str:
        return self.name("logs")

    @property
    def training(self) -> str:
        return self.name("training")

    @property
    def detections(self) -> str:
        return self.name("detections")

    @property
    def predictions(self) -> str:
        return self.name("predictions")

    @property
    def alerts(self) -> str:
        return self.name("alerts")

    @property
    def groundtruth(self) -> str:
        return self.name("groundtruth")
