"""The sinks' config section (``sink:`` in the Vigil config file); today one sink, ``sink.influx``.

```yaml
sink:
  influx:
    enabled: true                 # `vigil up` starts `vigil sink influx` beside the services
    url: http://127.0.0.1:8428    # InfluxDB 2/3 or VictoriaMetrics (api v2); InfluxDB 1.x (api v1)
    api: v2
    org: vigil
    bucket: vigil
    token: {env: INFLUX_TOKEN}    # a Secret: inline, {file: PATH} or {env: NAME}
    batch_size: 20000             # lines per write request
    flush_interval: 1s            # the longest a consumed record waits for its write and offset commit
    retry: {max_retries: 5, initial: 1s, max_delay: 30s, exponential_base: 2, max_time: 60s}
```
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from vigil.config import ConsumerHealthConfig, FrozenModel, KeyProblem, PositiveDuration, raise_key_errors
from vigil.secret import Secret

_HTTP_URL = re.compile(r"^https?://[^\s/$.?#][^\s?#]*$")
Stream = Literal["telemetry", "detections"]
STREAMS: tuple[Stream, ...] = ("telemetry", "detections")


class WriteRetryConfig(FrozenModel):
    """Retries of one write request (influxdb-client's ``WritesRetry``): connection errors, 429 and 5xx.

    The n-th retry waits a random time between ``initial * base^(n-1)`` and ``initial * base^n``,
    capped at ``max_delay``; after ``max_retries`` retries or ``max_time`` the write fails, the sink
    backs off and replays from its committed offsets (Kafka holds what the store has not confirmed)."""

    max_retries: Annotated[int, Field(ge=0, le=100)] = 5
    initial: Annotated[PositiveDuration, Field(le=300)] = 1.0
    max_delay: Annotated[PositiveDuration, Field(le=300)] = 30.0
    exponential_base: Annotated[float, Field(ge=1.0, le=10.0)] = 2.0
    # Kafka drops a member that does not poll for 5 minutes (max.poll.interval.ms), and a write in
    # retries does not poll: one request, retries included, stays well inside that.
    max_time: Annotated[PositiveDuration, Field(le=240)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> WriteRetryConfig:
        if self.max_delay < self.initial:
            message = f"must not be shorter than initial ({self.initial:g}s)"
            raise_key_errors(self, [(("max_delay",), message, self.max_delay)])
        return self


class InfluxConfig(FrozenModel):
    """``vigil sink influx``: the telemetry and detections topics into InfluxDB or VictoriaMetrics.

    ``api: v2`` writes ``/api/v2/write?org=&bucket=`` with ``token`` (InfluxDB 2/3, VictoriaMetrics,
    InfluxDB 1.8+ with ``bucket: db/rp``); ``api: v1`` writes ``/write?db=&rp=`` with ``username`` and
    ``password`` (Basic auth) for InfluxDB 1.x before 1.8."""

    enabled: bool = False
    url: str | None = None
    api: Literal["v2", "v1"] = "v2"
    org: str = "vigil"
    bucket: str = "vigil"
    token: Secret | None = None
    database: str = "vigil"
    retention_policy: str = ""  # empty: the database's default
    username: str = ""
    password: Secret | None = None
    group: Annotated[str, Field(min_length=1)] = "vigil-sink-influx"
    streams: Annotated[list[Stream], Field(min_length=1)] = Field(default_factory=lambda: list(STREAMS))
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    flush_interval: Annotated[PositiveDuration, Field(le=60)] = 1.0
    timeout: Annotated[PositiveDuration, Field(le=60)] = 10.0  # one HTTP attempt
    retry: WriteRetryConfig = Field(default_factory=WriteRetryConfig)
    poll_timeout: Annotated[PositiveDuration, Field(le=60)] = 0.5
    max_poll_records: Annotated[int, Field(ge=1, le=100_000)] = 500
    health: ConsumerHealthConfig = Field(default_factory=ConsumerHealthConfig)  # when /healthz fails

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not _HTTP_URL.match(url):
            raise ValueError("must be an http:// or https:// URL without query or fragment (e.g. http://host:8086)")
        return url

    @field_validator("streams")
    @classmethod
    def _distinct(cls, streams: list[Stream]) -> list[Stream]:
        if len(set(streams)) != len(streams):
            raise ValueError("each stream at most once")
        return streams

    @model_validator(mode="after")
    def _complete(self) -> InfluxConfig:
        problems: list[KeyProblem] = []
        if self.enabled and self.url is None:
            problems.append((("url",), "required when the sink is enabled", None))
        names = ("org", "bucket") if self.api == "v2" else ("database",)
        problems += [((name,), f"required with api {self.api}", "") for name in names if not getattr(self, name)]
        if self.password is not None and not self.username:
            problems.append((("username",), "required with a password", ""))
        raise_key_errors(self, problems)
        return self


class SinkConfig(FrozenModel):
    influx: InfluxConfig = Field(default_factory=InfluxConfig)
