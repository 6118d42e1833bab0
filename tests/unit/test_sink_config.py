"""The ``sink.influx`` section: what cannot work fails at start naming the key; the token stays a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vigil.cli.app import build_app
from vigil.cli.settings import dump_config, load_config
from vigil.errors import ConfigError
from vigil.secret import REDACTED


def config_error(tmp_path: Path, sink: dict[str, object]) -> str:
    path = tmp_path / "sink.yaml"
    path.write_text(yaml.safe_dump({"sink": {"influx": sink}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ({"enabled": True}, "sink.influx.url: required when the sink is enabled"),
        ({"url": "ftp://db:8086"}, "sink.influx.url: must be an http:// or https:// URL"),
        ({"url": "http://db:8086/?db=x"}, "sink.influx.url: must be an http:// or https:// URL without query"),
        ({"api": "v1", "database": ""}, "sink.influx.database: required with api v1"),
        ({"bucket": ""}, "sink.influx.bucket: required with api v2"),
        ({"api": "v3"}, "sink.influx.api: Input should be 'v2' or 'v1'"),
        ({"password": "x"}, "sink.influx.username: required with a password"),
        ({"streams": ["logs"]}, "sink.influx.streams[0]: Input should be 'telemetry' or 'detections'"),
        ({"streams": ["telemetry", "telemetry"]}, "sink.influx.streams: each stream at most once"),
        ({"streams": []}, "sink.influx.streams: List should have at least 1 item"),
        ({"batch_size": 0}, "sink.influx.batch_size: Input should be greater than or equal to 1"),
        ({"flush_interval": "0s"}, "sink.influx.flush_interval: must be a positive duration (got 0s)"),
        ({"retry": {"initial": "10s", "max_delay": "2s"}}, "sink.influx.retry.max_delay: must not be shorter than"),
        ({"retry": {"max_time": "10m"}}, "sink.influx.retry.max_time: Input should be less than or equal to 240"),
        ({"token": {"env": "NO_SUCH_VIGIL_VAR"}}, "sink.influx.token: environment variable NO_SUCH_VIGIL_VAR"),
        ({"tokn": "x"}, "sink.influx.tokn: unknown key"),
    ],
)
def test_a_sink_that_cannot_work_fails_at_start_naming_the_key(
    tmp_path: Path, sink: dict[str, object], message: str
) -> None:
    assert message in config_error(tmp_path, sink)


def test_the_sink_is_off_by_default_and_a_full_section_loads(tmp_path: Path) -> None:
    assert load_config(None).sink.influx.enabled is False
    path = tmp_path / "ok.yaml"
    path.write_text(
        "sink:\n  influx: {enabled: true, url: 'https://influx.example:8086', api: v1, database: gpu,\n"
        "           retention_policy: weekly, username: vigil, password: pw, batch_size: 5000,\n"
        "           retry: {max_retries: 10, initial: 500ms, max_delay: 1m, max_time: 4m}}\n"
    )
    influx = load_config(path).sink.influx
    assert (influx.api, influx.database, influx.retry.max_delay, influx.retry.max_time) == ("v1", "gpu", 60.0, 240.0)


def test_the_token_is_never_written_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sink: {influx: {url: 'http://127.0.0.1:8086', token: 'tok-123'}}\n")
    cfg = load_config(path)
    assert "tok-123" not in repr(cfg) and cfg.sink.influx.token is not None
    assert cfg.sink.influx.token.reveal() == "tok-123"
    dump_config(cfg, tmp_path / "run" / "vigil.yaml")
    written = (tmp_path / "run" / "vigil.yaml").read_text()
    assert "tok-123" not in written and REDACTED not in written
    reread = load_config(tmp_path / "run" / "vigil.yaml").sink.influx.token  # from its own 0600 file
    assert reread is not None and reread.reveal() == "tok-123" and reread.source.startswith("file:")


def test_the_sink_command_refuses_a_config_without_a_url_with_status_2() -> None:
    result = CliRunner().invoke(build_app(), ["sink", "influx"])
    assert result.exit_code == 2 and "sink.influx.url: required to run the sink" in result.output
