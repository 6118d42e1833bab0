"""The SMD evaluation: a synthetic machine end to end, bad files, causality, and a real-data smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from vigil.analytics.eval import baselines, metrics, scorers, smd, smd_data, smd_dev, smd_legacy, smd_select
from vigil.analytics.eval.honest import Honest, Threshold

from tests.shared_data import datasets_root
from vigil.cli.app import build_app


def write_machine(folder: Path, name: str, seed: int = 0) -> None:
    """Three metrics driven by one daily cycle; test has one 60-sample break of their relation."""
    rng = np.random.default_rng(seed)

    def rows(n: int) -> np.ndarray:
        cycle = np.sin(np.arange(n) * 2 * np.pi / 1440) + rng.normal(0, 0.05, n)
        return np.column_stack((cycle, 2 * cycle + rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)))

    test, labels = rows(3000), np.zeros(3000)
    test[2000:2060, 1] = -2 * test[2000:2060, 0]  # the second metric turns against the first
    labels[2000:2060] = 1
    for suffix, array in (("train", rows(6000)), ("test", test), ("test_label", labels)):
        np.save(folder / f"{name}_{suffix}.npy", array.astype(np.float32))


def test_synthetic_break_is_found_with_a_train_only_threshold(tmp_path: Path) -> None:
    write_machine(tmp_path, "machine-9-9")
    results, _ = smd.evaluate(tmp_path, detector="mspc")
    figures = results[0].figures
    assert results[0].machine.interval_s == smd_data.SMD_INTERVAL_S
    assert figures["event_recall"] == 1.0
    assert figures["recall"] > 0.95
    assert figures["f1"] > 0.7  # a 1% held-out alarm budget costs some precision on this clean series
    assert figures["false_alarms_per_day"] < 10
    assert figures["median_delay_min"] <= 3.0
    assert figures["random_f1"] < 0.1


def test_cli_prints_the_json_contract(tmp_path: Path) -> None:
    write_machine(tmp_path, "omi-9")
    out = CliRunner().invoke(build_app(), ["eval", "smd", "--data", str(tmp_path), "--json", "--plots", str(tmp_path)])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert {"f1_mean", "pca_oracle_f1_mean", "random_f1_mean", "protocol", "seconds"} <= summary.keys()
    machine = summary["machines"]["omi-9"]
    for key in ("precision", "recall", "f1", "pa_f1", "pak_f1", "pak_auc", "event_recall", "false_alarms_per_day",
                "median_delay_min", "auprc", "pca_oracle_f1", "random_f1", "threshold"):  # fmt: skip
        assert key in machine
    assert (tmp_path / "omi-9.png").stat().st_size > 10_000


def test_adaptive_detector_through_the_cli_with_a_regime_change(tmp_path: Path) -> None:
    write_machine(tmp_path, "machine-9-7")
    test = np.load(tmp_path / "machine-9-7_test.npy")
    test[500:, 2] += 1.0  # an unlabelled new level of the third metric (20 noise spreads) from row 500 on
    np.save(tmp_path / "machine-9-7_test.npy", test)
    out = CliRunner().invoke(build_app(), ["eval", "smd", "--data", str(tmp_path), "--json", "--detector",
                                           "adaptive_mspc"])  # fmt: skip
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["detector"] == "adaptive_mspc"
    assert "designed after seeing that frozen models fail" in summary["protocol"]
    figures = summary["machines"]["machine-9-7"]
    assert figures["event_recall"] == 1.0  # the break is still found after the new level was accepted
    adaptive = smd.evaluate(tmp_path, detector="adaptive_mspc")[0][0]
    frozen = smd.evaluate(tmp_path, detector="mspc")[0][0]
    assert adaptive.figures["f1"] == pytest.approx(figures["f1"], abs=1e-4)  # the CLI ran the same thing
    settled = slice(1500, 2000)  # a day after the change, before the break
    assert (frozen.scores[settled] > frozen.thresholds[settled]).mean() > 0.95  # the frozen one alarms on the new level
    assert (adaptive.scores[settled] > adaptive.thresholds[settled]).mean() < 0.3  # the adaptive one accepted it
    assert adaptive.figures["f1"] > 2 * frozen.figures["f1"]
    out = CliRunner().invoke(build_app(), ["eval", "smd", "--data", str(tmp_path), "--detector", "nope"])
    assert out.exit_code == 2
    assert "unknown detector 'nope'" in out.output


def test_missing_or_malformed_data_fails_clearly(tmp_path: Path) -> None:
    out = CliRunner().invoke(build_app(), ["eval", "smd", "--data", str(tmp_path / "nowhere")])
    assert out.exit_code == 2
    assert "nowhere: no such folder" in out.output
    out = CliRunner().invoke(build_app(), ["eval", "smd", "--data", str(tmp_path)])
    assert out.exit_code == 2
    assert "no <name>_train.npy with its _test.npy and _test_label.npy" in out.output
    write_machine(tmp_path, "omi-8")
    np.save(tmp_path / "omi-8_test_label.npy", np.zeros(10))
    with pytest.raises(smd_data.DatasetError, match="10 labels for 3000 test rows"):
        smd_data.load_machine(tmp_path, "omi-8")
    (tmp_path / "omi-8_test.npy").write_bytes(b"not numpy")
    with pytest.raises(smd_data.DatasetError, match=r"omi-8_test\.npy: not a numeric"):
        smd_data.load_machine(tmp_path, "omi-8")


def test_causal_mean_never_looks_ahead() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(scorers.causal_mean(x, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    changed = x.copy()
    changed[4] = 100.0
    np.testing.assert_allclose(scorers.causal_mean(changed, 3)[:4], scorers.causal_mean(x, 3)[:4])


def test_real_machine_slice_smoke() -> None:
    results, seconds = smd.evaluate(datasets_root() / "smd", ["omi-1"], limit=3000)
    figures = results[0].figures
    assert 0.0 <= figures["f1"] <= 1.0
    assert 0.0 <= figures["pca_oracle_f1"] <= 1.0
    assert np.isfinite(figures["threshold"])
    assert seconds < 20


def test_day_median_normaliser_forgets_a_drift_but_not_an_incident() -> None:
    history = np.ones(100)
    scores = np.concatenate((np.full(300, 10.0), np.full(20, 100.0), np.full(80, 10.0)))  # drift x10, then incident
    out = smd_legacy.causal_relative(history, scores, 100)
    assert out[0] == 10.0  # the day before was at 1
    assert out[299] == pytest.approx(1.0)  # a day into the drift it is the new normal
    assert out[300:320].min() == pytest.approx(10.0)  # the incident stands out against that
    changed = scores.copy()
    changed[-1] = 1e6
    np.testing.assert_allclose(smd_legacy.causal_relative(history, changed, 100)[:-1], out[:-1])  # no look-ahead


def test_dev_study_reads_train_only(tmp_path: Path) -> None:
    write_machine(tmp_path, "machine-9-8")
    for suffix in ("test", "test_label"):
        (tmp_path / f"machine-9-8_{suffix}.npy").unlink()  # the study must not need them
    result = smd_dev.study(tmp_path)
    assert set(result["f1_mean"]) == set(smd_dev.VARIANTS)
    assert result["winner"] in smd_dev.VARIANTS
    assert result["best_per_detector"]["mspc"].startswith("mspc ")
    assert result["best_per_detector"]["adaptive_mspc"].startswith("adaptive ")
    assert all(0.0 <= f1 <= 1.0 for f1 in result["f1_mean"].values())


def test_nonstationarity_is_unlabelled_drift_and_a_lasting_shift() -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(0, 1, (4000, 20))
    still = smd_dev.nonstationary(rows, rows, np.random.default_rng(3), regime_change=False)
    drifted = (still != rows).any(axis=0)
    assert 2 <= drifted.sum() <= 6  # 10-30% of the metrics drift
    assert np.allclose(still[0], rows[0])  # a ramp from zero
    moved = smd_dev.nonstationary(rows, rows, np.random.default_rng(3), regime_change=True)
    shifted = np.abs((moved - still)[-1]) >= 2.0  # 2-5 spreads at the end, for good
    assert 4 <= shifted.sum() <= 10
    first = int(np.argmax((moved != still).any(axis=1)))
    assert 400 <= first <= 1600
    assert (np.abs(moved - still)[first:, shifted] >= 2.0).all()


def test_injected_incidents_are_labelled_where_written() -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(0, 1, (4000, 5))
    out, labels = smd_dev.inject(rows, rows, np.random.default_rng(2))
    changed = (out != rows).any(axis=1)
    assert len(metrics.segments(labels)) == smd_dev.INCIDENTS
    lengths = np.diff(metrics.segments(labels), axis=1).ravel()
    assert 180 <= lengths[smd_dev.LONG_INCIDENT] <= 360  # 3-6 hours of one-minute samples
    assert np.delete(lengths, smd_dev.LONG_INCIDENT).max() <= 60
    assert not changed[~labels].any()  # nothing written outside the labels
    assert changed[labels].mean() > 0.9  # and (a stuck first sample aside) everything inside is


def write_service(folder: Path, name: str, seed: int) -> None:
    """A JumpStarter-like service: raw, unscaled metrics (hundreds of millions), one constant column, 5-minute
    samples; its test breaks the relation of the first two metrics for 12 samples (an hour)."""
    rng = np.random.default_rng(seed)

    def rows(n: int) -> np.ndarray:
        cycle = np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 0.05, n)
        load = 3e8 * (1.2 + cycle)
        return np.column_stack((load, 0.5 * load + rng.normal(0, 1e6, n), np.full(n, 42.0), rng.normal(5e3, 50, n)))

    test, labels = rows(2000), np.zeros(2000)
    test[1500:1512, 1] = 2e8  # the second metric stops following the first, within its usual range
    labels[1500:1512] = 1
    for suffix, array in (("train", rows(3000)), ("test", test), ("test_label", labels)):
        np.save(folder / f"{name}_{suffix}.npy", array.astype(np.float32))


def test_any_folder_in_the_smd_layout_with_unscaled_and_constant_columns(tmp_path: Path) -> None:
    for seed, name in enumerate(("dataset2-service10", "dataset2-service2", "dataset2-service0")):
        write_service(tmp_path, name, seed)
    assert smd_data.machine_names(tmp_path) == ["dataset2-service0", "dataset2-service2", "dataset2-service10"]
    out = CliRunner().invoke(build_app(), ["eval", "smd", "--data", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["detector"] == smd.DEFAULT_DETECTOR and summary["entities"] == 3
    assert list(summary["datasets"]) == ["dataset2"]
    for key in ("f1_mean", "event_recall_at_budget_mean", "median_delay_at_budget_min", "pca_honest_f1_mean",
                "pca_honest_event_recall_at_budget_mean", "pca_oracle_f1_mean", "pca_plain_oracle_f1_mean",
                "budget_kept_mean", "false_pages_per_day_mean"):  # fmt: skip
        assert summary[key] is not None, key
    assert summary["event_recall_at_budget_mean"] == 1.0  # every service's break is caught within the budget
    for figures in summary["machines"].values():  # the honest threshold itself catches most of each break
        assert figures["recall"] > 0.8 and figures["f1"] > 5 * figures["random_f1"]
    assert "Alarm budget: at most 1 false alarm per entity per day" in summary["protocol"]
    results, _ = smd.evaluate(tmp_path, ["dataset2-service0"])
    assert results[0].machine.interval_s == 300.0
    assert np.isfinite(results[0].scores).all()


def test_the_default_is_the_recorded_winner_of_the_selection_grid() -> None:
    setting = smd.DETECTORS[smd.DEFAULT_DETECTOR]
    assert setting in smd_select.GRID
    assert smd.PCA_FORM in baselines.HONEST_PCA
    assert setting.describe() in smd.summarise([], 0.0)["protocol"]


def test_selection_chooses_on_the_selection_half_only(tmp_path: Path) -> None:
    for seed, name in enumerate(("machine-9-1", "machine-9-2", "machine-9-3")):
        write_machine(tmp_path, name, seed)
    strict = Honest("mspc", 5, Threshold("conformal", 0.01))
    grid = [Honest("mspc", 5, Threshold("conformal", 0.5)), strict]  # alarming half the time loses on F1
    result = smd_select.study(tmp_path, grid=grid)
    assert result["splits"] == {"selection": ["machine-9-1", "machine-9-3"], "confirmation": ["machine-9-2"]}
    assert result["winner"] == smd_select.name_of(strict)
    assert result["winner_figures"]["selection"]["entities"] == 2
    assert result["pca_form"] in baselines.HONEST_PCA
    only = smd_select.study(tmp_path, grid=grid, selection_only=True)
    assert set(only["winner_figures"]) == {"selection"}  # the confirmation half is not scored at all


def test_choice_ties_go_to_the_earlier_setting() -> None:
    ranked = {"a": {"objective": 0.500}, "b": {"objective": 0.504}, "c": {"objective": 0.490}}
    assert smd_select.choose(ranked, ["a", "b", "c"]) == "a"  # within TIE of the best
    assert smd_select.choose(ranked, ["c", "b", "a"]) == "b"


RULES = (("conformal", 0.05), ("spot", 1e-3), ("spot_stream", 1e-3), ("dspot", 1e-3), ("budget", 1.0), ("iqr", 5.0))


@pytest.mark.parametrize("threshold", [Threshold(m, v) for m, v in RULES])
def test_every_threshold_rule_finds_the_synthetic_break(tmp_path: Path, threshold: Threshold) -> None:
    write_machine(tmp_path, "machine-9-6")
    machine = smd_data.load_machine(tmp_path, "machine-9-6")
    for scorer in ("var_residual", "adaptive_mspc+mspc"):
        run = Honest(scorer, 5, threshold).run(machine)
        assert run.margins.shape == machine.labels.shape
        assert (run.margins[2000:2060] > 0).mean() > 0.5, (scorer, threshold)
        assert (run.margins[:1900] > 0).mean() < 0.1, (scorer, threshold)


def test_the_default_setting_never_looks_ahead(tmp_path: Path) -> None:
    write_machine(tmp_path, "machine-9-5")
    machine = smd_data.load_machine(tmp_path, "machine-9-5")
    setting = smd.DETECTORS[smd.DEFAULT_DETECTOR]
    before = setting.run(machine)
    test = machine.test.copy()
    test[2500:] *= 10.0  # everything from row 2500 on changes
    after = setting.run(smd_data.Machine(machine.name, machine.train, test, machine.labels, machine.interval_s))
    np.testing.assert_array_equal(after.margins[:2500], before.margins[:2500])
    assert not np.array_equal(after.margins[2500:], before.margins[2500:])
