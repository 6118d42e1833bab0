"""``vigil eval nab``: a made-up NAB folder end to end, bad folders, and the real corpus when present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from vigil.analytics.eval import datasets_root

from vigil.cli.app import build_app

runner = CliRunner()


def write_nab(root: Path, n: int = 1500) -> None:
    """Two series in NAB's layout: one with a labelled level jump, one without anomalies."""
    (root / "data" / "synthetic").mkdir(parents=True)
    (root / "labels").mkdir()
    stamps = np.datetime64("2020-01-01T00:00:00") + np.arange(n) * np.timedelta64(5, "m")
    rng = np.random.default_rng(0)
    base = 10 + 3 * np.sin(np.arange(n) * 2 * np.pi / 48) + rng.normal(0, 0.3, n)
    jump = base.copy()
    jump[1000:1030] += 25
    windows = {}
    for name, values in (("with_jump.csv", jump), ("quiet.csv", base)):
        lines = ["timestamp,value"] + [
            f"{str(t).replace('T', ' ')},{v:.4f}" for t, v in zip(stamps, values, strict=True)
        ]
        (root / "data" / "synthetic" / name).write_text("\n".join(lines) + "\n")
        windows[f"synthetic/{name}"] = []
    # Window edges as NAB writes them: "YYYY-MM-DD HH:MM:SS.ffffff".
    edge = [str(stamps[i]).replace("T", " ") + ".000000" for i in (950, 1049)]
    windows["synthetic/with_jump.csv"] = [edge]
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_synthetic_corpus_end_to_end(tmp_path: Path) -> None:
    write_nab(tmp_path / "nab")
    result = runner.invoke(
        build_app(), ["eval", "nab", "--data", str(tmp_path / "nab"), "--json", "--plots", str(tmp_path / "png")]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["files"] == 2 and doc["counts"]["standard"]["windows"] == 1
    assert doc["counts"]["standard"]["windows_detected"] == 1
    assert doc["standard"] > 80.0  # the jump is caught early in its window, and nothing else fires
    assert set(doc["thresholds"]) == {"standard", "low_fp", "low_fn"}
    assert doc["scoreboard"] == {}  # no published results in a made-up folder
    assert "NAB-style" in doc["threshold_tuning"]
    for png in doc["plots"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_folders_fail_with_a_clear_message(tmp_path: Path) -> None:
    result = runner.invoke(build_app(), ["eval", "nab", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "combined_windows.json: not found" in result.output
    write_nab(tmp_path / "nab")
    (tmp_path / "nab" / "data" / "synthetic" / "quiet.csv").write_text("time,v\n1,2\n")
    result = runner.invoke(build_app(), ["eval", "nab", "--data", str(tmp_path / "nab")])
    assert result.exit_code == 2 and "quiet.csv: expected a 'timestamp,value' header" in result.output
    result = runner.invoke(build_app(), ["eval", "nab", "--data", str(tmp_path / "nab"), "--subset", "half"])
    assert result.exit_code == 2 and "subset must be one of" in result.output


def test_real_corpus_json() -> None:
    root = datasets_root() / "nab"
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip("NAB data set is not present")
    result = runner.invoke(build_app(), ["eval", "nab", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["files"] == 58 and doc["records"] == 365_558
    assert doc["counts"]["standard"]["windows"] == 116
    assert doc["scoreboard"]["numenta"]["standard"] == pytest.approx(70.10, abs=0.01)
    for key in ("standard", "low_fp", "low_fn"):
        assert -100.0 < doc[key] <= 100.0
    assert doc["detector"]["name"] == "context_likelihood"
