"""``vigil check-config``: a bad file fails naming the key path; a good one passes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from vigil.cli.app import build_app


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  session_timeout: 3 sec\nalerting:\n  notifiers:\n    - {type: webhook, url: 'ftp://x'}\n")
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(bad)])
    assert result.exit_code == 2
    assert "kafka.session_timeout: invalid duration '3 sec'" in result.output
    assert "alerting.notifiers[0]" in result.output


def test_check_config_accepts_defaults_and_a_full_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "cluster: dc1\nkafka: {bootstrap_servers: ['127.0.0.1:9092'], compression: zstd}\n"
        "alerting: {notifiers: [{type: log}]}\n"
    )
    runner = CliRunner()
    assert runner.invoke(build_app(), ["check-config"]).exit_code == 0
    result = runner.invoke(build_app(), ["check-config", "-c", str(good)])
    assert result.exit_code == 0, result.output
    assert "cluster=dc1" in result.output


def test_up_and_chaos_fail_with_status_2_on_a_bad_supervision_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"data_dir: {tmp_path / 'data'}\nsupervision: {{backoff: 10s, max_backoff: 2s}}\n")
    for command in ("up", "chaos"):
        result = CliRunner().invoke(build_app(), [command, "-c", str(bad), "--duration", "60"])
        assert result.exit_code == 2, (command, result.output)
        assert "supervision.max_backoff: must not be shorter than backoff (10s)" in result.output
        assert not (tmp_path / "data").exists()  # nothing was started


def test_chaos_refuses_an_external_broker_with_status_2(tmp_path: Path) -> None:
    cfg = tmp_path / "ext.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\nkafka: {{bootstrap_servers: ['127.0.0.1:9']}}\n")
    result = CliRunner().invoke(build_app(), ["chaos", "-c", str(cfg), "--data-dir", str(tmp_path / "chaos")])
    assert result.exit_code == 2, result.output
    assert "kafka.bootstrap_servers: vigil chaos kills the embedded broker" in result.output


def test_chaos_refuses_a_data_dir_with_an_earlier_run_with_status_2(tmp_path: Path) -> None:
    (tmp_path / "old" / "broker").mkdir(parents=True)
    result = CliRunner().invoke(build_app(), ["chaos", "--data-dir", str(tmp_path / "old")])
    assert result.exit_code == 2, result.output
    assert "is not empty" in result.output


def test_later_config_files_merge_over_earlier_ones(tmp_path: Path) -> None:
    """The Helm chart's split: a ConfigMap file, then a Secret's fragment with the notifiers and keys."""
    from vigil.cli.settings import load_config

    base = tmp_path / "config.yaml"
    base.write_text(
        "cluster: dc1\nkafka: {bootstrap_servers: ['kafka:9092'], compression: zstd}\n"
        "alerting: {notifiers: [{type: log}], dispatch_batch: 7}\n"
    )
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(
        "alerting:\n  notifiers:\n    - {type: webhook, url: 'https://hooks.example.com/x', secret: s3cret}\n"
    )
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(base), "-c", str(secrets)])
    assert result.exit_code == 0, result.output
    assert "cluster=dc1" in result.output
    loaded = load_config([base, secrets])
    assert loaded.kafka.bootstrap_servers == ["kafka:9092"] and loaded.kafka.compression == "zstd"
    assert loaded.alerting.dispatch_batch == 7  # mappings merge key by key
    assert [n.type for n in loaded.alerting.notifiers] == ["webhook"]  # a list is replaced whole


def test_an_error_in_a_later_file_names_the_key_path(tmp_path: Path) -> None:
    base = tmp_path / "config.yaml"
    base.write_text("cluster: dc1\n")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("alerting: {retry: {max_attempts: -1}}\n")
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(base), "-c", str(secrets)])
    assert result.exit_code == 2
    assert "alerting.retry.max_attempts" in result.output


MODEL_STAGE = (
    "analytics:\n  stages:\n    - zscore\n    - threshold\n    - peers\n"
    "    - {stage: model, name: host_mspc, model: %s, per: host,\n"
    "       metrics: [gpu_temperature_celsius, gpu_power_watts], options: {half_life: 600}}\n"
)


def test_check_config_rejects_an_unknown_model_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yaml"
    path.write_text(MODEL_STAGE % "seasonall")
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(path)])
    assert result.exit_code == 2
    assert "analytics.stages[3].model: unknown model 'seasonall' (known: adaptive_mspc," in result.output
    path.write_text(MODEL_STAGE % "adaptive_mspc")
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(path)])
    assert result.exit_code == 0, result.output


def test_a_model_stage_survives_the_effective_config_written_for_the_services(tmp_path: Path) -> None:
    from vigil.cli.settings import dump_config, load_config

    path = tmp_path / "vigil.yaml"
    path.write_text(MODEL_STAGE % "adaptive_mspc")
    config = load_config(path)
    dump_config(config, tmp_path / "run" / "vigil.yaml")
    assert load_config(tmp_path / "run" / "vigil.yaml") == config
    assert config.analytics.stage_names() == ["zscore", "threshold", "peers", "host_mspc"]


def test_the_old_detectors_key_still_loads_with_a_deprecation_warning(tmp_path: Path) -> None:
    import pytest

    from vigil.cli.settings import load_config

    path = tmp_path / "vigil.yaml"
    path.write_text("analytics: {detectors: [zscore, xid]}\n")
    with pytest.warns(DeprecationWarning, match="analytics.detectors is deprecated"):
        config = load_config(path)
    assert config.analytics.stage_names() == ["zscore", "xid"]
    path.write_text("analytics: {detectors: [zscore], stages: [xid]}\n")
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(path)])
    assert result.exit_code == 2 and "give stages only" in result.output
