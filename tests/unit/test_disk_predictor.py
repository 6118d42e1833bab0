"""Disk failure prediction: features, the rule prior, the GBM and `vigil eval disk` on a synthetic
fleet in the Backblaze daily-CSV layout (the layout real SMART datasets use)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from vigil.analytics.eval.disk import evaluate
from vigil.analytics.predict.disk import (
    GbmModel,
    RulePrior,
    baseline_rule,
    disk_features,
    label_within,
    read_smart_csv,
)


def synthetic_fleet(tmp: Path, drives: int = 300, days: int = 60, failing: int = 30, seed: int = 1) -> Path:
    """Daily CSVs: failing drives start reallocating sectors 5-20 days before failure, except a quarter
    that fail with no SMART warning; 5% of healthy drives carry an old, constant reallocated count."""
    rng = np.random.default_rng(seed)
    start = dt.date(2024, 1, 1)
    fail_day = {d: int(rng.integers(25, days)) for d in range(failing)}
    silent = set(range(0, failing, 4))
    scarred = set(rng.choice(np.arange(failing, drives), size=drives // 20, replace=False).tolist())
    rows = []
    for day in range(days):
        for d in range(drives):
            if d in fail_day and day > fail_day[d]:
                continue  # a failed drive leaves the fleet
            r5 = 8.0 if d in scarred else 0.0
            r197 = 0.0
            if d in fail_day and d not in silent:
                onset = fail_day[d] - 5 - (d % 15)
                if day >= onset:
                    r5 += 3.0 * (day - onset + 1)
                    r197 = float(day - onset)
            failed_today = int(d in fail_day and day == fail_day[d])
            rows.append((str(start + dt.timedelta(days=day)), f"S{d:04d}", "M1", failed_today,
                         r5, 0.0, 0.0, r197, 0.0, 0.0, 1000.0 + 24 * day, 30.0 + rng.normal()))
    cols = ["date", "serial_number", "model", "failure", "smart_5_raw", "smart_187_raw", "smart_188_raw",
            "smart_197_raw", "smart_198_raw", "smart_199_raw", "smart_9_raw", "smart_194_raw"]
    frame = pd.DataFrame(rows, columns=cols)
    out = tmp / "fleet"
    out.mkdir()
    for date, part in frame.groupby("date"):
        part.to_csv(out / f"{date}.csv", index=False)
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_fleet(tmp_path_factory.mktemp("smart"))


def test_features_measure_counter_growth_per_drive_in_row_order(fleet: Path) -> None:
    frame = read_smart_csv(sorted(fleet.glob("*.csv")))
    shuffled = frame.sample(frac=1.0, random_state=0)
    feats = disk_features(shuffled)
    assert (feats.index == shuffled.index).all()
    growing = feats[(shuffled["serial_number"] == "S0001").to_numpy()]
    assert growing["smart_5_delta"].max() == pytest.approx(3.0 * 7)  # 7-day window of +3/day
    scar = feats[(shuffled["smart_5_raw"] == 8.0).to_numpy()]
    assert (scar["smart_5_delta"] == 0).all()  # an old constant count is not growth


def test_rule_prior_ranks_growth_above_scars_above_clean() -> None:
    names = [f"smart_{a}_raw" for a in (5, 187, 188, 197, 198, 199, 9, 194)]
    deltas = [f"smart_{a}_delta" for a in (5, 187, 188, 197, 198, 199)]
    rows = pd.DataFrame(0.0, index=range(3), columns=names + deltas)
    rows.loc[1, "smart_5_raw"] = 8
    rows.loc[2, ["smart_5_raw", "smart_5_delta"]] = [20, 12]
    p = RulePrior(horizon_days=30).predict_proba(rows)
    assert p[0] == pytest.approx(RulePrior(30).clean_probability())
    assert p[0] < RulePrior(30).base_rate() < p[1] < p[2] < 1
    # 76.7% vs 4.2%: the published likelihood ratio, applied to the base odds
    odds = RulePrior(30).base_rate() / (1 - RulePrior(30).base_rate()) * 0.767 / 0.042
    assert p[1] == pytest.approx(odds / (1 + odds))


def test_labels_mark_the_horizon_before_failure(fleet: Path) -> None:
    frame = read_smart_csv(sorted(fleet.glob("*.csv")))
    y = label_within(frame, horizon_days=7)
    one = frame["serial_number"] == "S0001"
    assert int(y[one.to_numpy()].sum()) == 8  # the failure day and the 7 before it
    assert y[(frame["serial_number"] == "S0299").to_numpy()].sum() == 0


def test_gbm_trains_saves_and_loads(fleet: Path, tmp_path: Path) -> None:
    frame = read_smart_csv(sorted(fleet.glob("*.csv")))
    feats = disk_features(frame)
    model = GbmModel(horizon_days=30, max_iter=50).fit(feats, label_within(frame, 30))
    p = model.predict_proba(feats)
    assert np.all((p >= 0) & (p <= 1))
    model.save(tmp_path / "disk.joblib")
    again = GbmModel.load(tmp_path / "disk.joblib")
    assert np.array_equal(again.predict_proba(feats), p)


def test_eval_disk_on_backblaze_layout_beats_nothing_and_reports_both_rules(fleet: Path, tmp_path: Path) -> None:
    result = evaluate(fleet, horizon=30, lead=1, target_fpr=0.05, plots=tmp_path / "plots")
    assert result["layout"] == "backblaze"
    base = result["baseline_smart_5_197_198"]
    assert base["failing_drives"] + base["healthy_drives"] == 90  # 30% of 300 drives
    # The scarred healthy drives trip the baseline rule; the models learn that growth, not scars, matters.
    assert base["fpr"] > 0.03
    assert result["gbm"]["fpr"] <= 0.1 and result["gbm"]["recall"] >= 0.5
    assert result["rule_prior"]["recall"] >= 0.5
    assert (tmp_path / "plots" / "disk-recall.png").stat().st_size > 0


def test_baseline_rule_reads_5_197_198_only() -> None:
    frame = pd.DataFrame({"smart_5_raw": [0, 1, 0, 0], "smart_197_raw": [0, 0, 2, 0], "smart_198_raw": [0, 0, 0, 0]})
    frame["smart_187_raw"] = [5, 0, 0, 0]
    assert baseline_rule(frame).tolist() == [False, True, True, False]


def test_eval_disk_on_alibaba_tickets_says_what_it_cannot_measure(datasets: Path) -> None:
    result = evaluate(datasets / "alibaba_ssd_failures")
    assert result["layout"] == "alibaba_failure_tickets"
    assert result["tickets"] == 18387
    assert 0.3 < result["baseline_smart_5_197_198"]["flagged_at_failure"] < 0.5
    assert "cannot be measured" in result["caveat"]


def test_vigil_train_disk_writes_a_model_the_predictor_stage_loads(fleet: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner
    from vigil.analytics.predict.stage import PredictorStage
    from vigil.analytics.slots import SlotTable

    from vigil.cli.app import build_app

    out = tmp_path / "disk.joblib"
    result = CliRunner().invoke(build_app(), ["train", "disk", "--data", str(fleet), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["positive_rows"] > 0 and out.stat().st_size > 0
    stage = PredictorStage(SlotTable(), disk_model=out)
    assert stage._gbm is not None


def test_vigil_train_disk_rejects_a_file_that_is_not_smart_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vigil.cli.app import build_app

    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(build_app(), ["train", "disk", "--data", str(bad)])
    assert result.exit_code == 2 and "missing columns" in result.output
