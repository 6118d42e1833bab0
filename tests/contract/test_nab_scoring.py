"""Our NAB scorer against NAB's own published results (the contract: NAB's scoreboard and result files).

The data folder holds, per published detector, the per-file and total raw scores for each profile
(``results/<det>/<det>_<profile>_scores.csv``) and the normalised scoreboard
(``results/final_results.json``); per-record anomaly scores and ``S(t)`` columns are published for
the numenta detector on the realKnownCause files. Skipped when the data is absent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from vigil.analytics.eval import datasets_root
from vigil.analytics.eval.nab_corpus import Series, load_corpus, load_profiles
from vigil.analytics.eval.nab_scoring import (
    FloatArray,
    Profile,
    normalise,
    null_score,
    perfect_score,
    record_scores,
    score_file,
    sweep,
)

PER_RECORD = "results/numenta/per_record/realKnownCause"


@pytest.fixture(scope="module")
def nab() -> Path:
    root = datasets_root() / "nab"
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip("NAB data set is not present")
    return root


@pytest.fixture(scope="module")
def corpus(nab: Path) -> list[Series]:
    return load_corpus(nab)


@pytest.fixture(scope="module")
def profiles(nab: Path) -> tuple[Profile, ...]:
    return load_profiles(nab)


def published_rows(nab: Path, detector: str, profile: str) -> list[dict[str, str]]:
    with (nab / "results" / detector / f"{detector}_{profile}_scores.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def numenta_records(nab: Path) -> dict[str, list[dict[str, str]]]:
    out = {}
    for path in sorted((nab / PER_RECORD).glob("numenta_*.csv")):
        with path.open() as fh:
            out["realKnownCause/" + path.name.removeprefix("numenta_")] = list(csv.DictReader(fh))
    if not out:
        pytest.skip("no per-record numenta results in this copy of NAB")
    return out


def test_corpus_shape(corpus: list[Series]) -> None:
    assert len(corpus) == 58
    assert sum(len(s.layout.windows) for s in corpus) == 116
    assert sum(len(s.values) for s in corpus) == 365_558  # NAB's Total_Count


def test_labels_match_published_label_column(corpus: list[Series], numenta_records: dict[str, list]) -> None:
    by_name = {s.name: s for s in corpus}
    for name, rows in numenta_records.items():
        label = np.array([int(r["label"]) for r in rows], dtype=bool)
        np.testing.assert_array_equal(by_name[name].layout.window_id >= 0, label, err_msg=name)


def test_record_by_record_against_numenta(
    nab: Path, corpus: list[Series], profiles: tuple[Profile, ...], numenta_records: dict[str, list]
) -> None:
    """Per record S(t), and per file score and TP/TN/FP/FN counts, at NAB's published thresholds."""
    by_name = {s.name: s for s in corpus}
    for profile in profiles:
        published = {r["File"]: r for r in published_rows(nab, "numenta", profile.name)}
        for name, rows in numenta_records.items():
            lay = by_name[name].layout
            scores = np.array([float(r["anomaly_score"]) for r in rows])
            row = published[name]
            threshold = float(row["Threshold"])
            ours = score_file(lay, scores, threshold, profile)
            assert ours.score == pytest.approx(float(row["Score"]), abs=1e-9), (name, profile.name)
            assert (ours.tp, ours.tn, ours.fp, ours.fn) == tuple(int(row[k]) for k in ("TP", "TN", "FP", "FN"))
            expected = np.array([float(r[f"S(t)_{profile.name}"]) for r in rows])
            np.testing.assert_allclose(record_scores(lay, scores, threshold, profile), expected, atol=1e-9)


def test_sweep_agrees_with_published_files(
    nab: Path, corpus: list[Series], profiles: tuple[Profile, ...], numenta_records: dict[str, list]
) -> None:
    """The corpus sweep over the numenta files, read at NAB's threshold, sums NAB's per-file scores;
    and at every candidate threshold it equals scoring each file on its own."""
    by_name = {s.name: s for s in corpus}
    names = sorted(numenta_records)
    layouts = [by_name[n].layout for n in names]
    scores: list[FloatArray] = [np.array([float(r["anomaly_score"]) for r in numenta_records[n]]) for n in names]
    for profile in profiles:
        published = {r["File"]: r for r in published_rows(nab, "numenta", profile.name)}
        threshold = float(published[names[0]]["Threshold"])
        swept = sweep(layouts, scores, profile)
        assert swept.at(threshold) == pytest.approx(sum(float(published[n]["Score"]) for n in names), abs=1e-8)
        best_t, best_raw = swept.best()
        assert best_raw == swept.raw.max() and best_raw >= swept.at(threshold)
        picks = np.random.default_rng(7).choice(swept.thresholds[1:], 15, replace=False)
        for t in [best_t, *picks]:
            direct = sum(score_file(lay, sc, float(t), profile).score for lay, sc in zip(layouts, scores, strict=True))
            assert swept.at(float(t)) == pytest.approx(direct, rel=1e-9, abs=1e-9)


def test_null_detector_per_file(nab: Path, corpus: list[Series], profiles: tuple[Profile, ...]) -> None:
    for profile in profiles:
        published = {r["File"]: r for r in published_rows(nab, "null", profile.name) if r["File"]}
        for s in corpus:
            ours = score_file(s.layout, np.zeros(len(s.values)), 0.5, profile)
            row = published[s.name]
            assert ours.score == pytest.approx(float(row["Score"])), s.name
            assert (ours.tn, ours.fn) == (int(row["TN"]), int(row["FN"])), s.name


def test_scoreboard_normalisation(nab: Path, corpus: list[Series], profiles: tuple[Profile, ...]) -> None:
    """Every published detector's total raw score, normalised with our null and perfect, is its
    scoreboard entry (``random`` is left out: its scoreboard figure is a mean over seeds, its files one seed)."""
    board = json.loads((nab / "results" / "final_results.json").read_text())
    layouts = [s.layout for s in corpus]
    checked = 0
    for detector, by_profile in board.items():
        if detector == "random":
            continue
        for profile in profiles:
            total = published_rows(nab, detector, profile.name)[-1]
            assert total["Detector"] == "Totals"
            ours = normalise(float(total["Score"]), null_score(layouts, profile), perfect_score(layouts, profile))
            assert ours == pytest.approx(by_profile[profile.name], abs=1e-6), (detector, profile.name)
            checked += 1
    assert checked >= 3 * 10
