"""The configuration file: one section per service, composed here (the composition root).

```yaml
cluster: dc1            # common
data_dir: .vigil
kafka: {bootstrap_servers: []}   # empty: start the embedded broker
broker: {storage: s3}
sim: {...}  analytics: {...}  alerting: {...}  canary: {...}
sink: {influx: {...}}   # `vigil sink influx`; `vigil up` starts it when sink.influx.enabled
supervision: {...}      # how `vigil up` restarts what dies
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from vigil.alerting.canary.config import CanaryConfig
from vigil.alerting.config import AlertingConfig
from vigil.analytics.config import AnalyticsConfig
from vigil.cli.supervisor import SupervisionConfig
from vigil.collectors.agent.config import AgentConfig
from vigil.collectors.sim.config import SimConfig
from vigil.config import BrokerConfig, CommonConfig, KafkaConfig, validate_layers
from vigil.files import write_private
from vigil.secret import SECRETS_DIR
from vigil.sinks.config import SinkConfig
from vigil.topics import Topics


class VigilConfig(CommonConfig):
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    supervision: SupervisionConfig = Field(default_factory=SupervisionConfig)

    def topics(self) -> Topics:
        return Topics(self.kafka.topics.prefix, dict(self.kafka.topics.partitions))

    def topic_partitions(self) -> dict[str, int]:
        """Every topic Vigil uses, with its dead-letter topic, and the partition count to create."""
        out: dict[str, int] = {}
        for spec in self.topics().all():
            out[spec.name] = spec.partitions
            out[spec.dlq] = 1
        return out


def load_config(
    paths: Path | Sequence[Path] | None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> VigilConfig:
    """The config file, or several merged in order (see :func:`vigil.config.load_yaml_files`), then
    the ``VIGIL_*`` environment (``environ``, default the process's), then ``overrides``."""
    return validate_layers(VigilConfig, paths, environ, overrides)


def dump_config(config: VigilConfig, path: Path) -> None:
    """Write ``config`` for child processes: 0600 in a 0700 folder, with no secret in clear.

    Inline secrets go into their own 0600 files in ``<folder>/secrets/`` (replaced on every dump)
    and the config refers to them; ``{file: ...}`` and ``{env: ...}`` secrets stay references.
    """
    import shutil

    import yaml

    secrets_dir = path.parent / "secrets"
    shutil.rmtree(secrets_dir, ignore_errors=True)
    data = config.model_dump(mode="json", context={SECRETS_DIR: secrets_dir})
    write_private(path, yaml.safe_dump(data, sort_keys=False))
