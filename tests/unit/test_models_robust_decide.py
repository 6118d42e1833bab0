"""The robust z model and the decision layer: bank forms against their scalar twins, level-shift
re-anchoring, hysteresis, cool-down, calibration, reasons, and the model registry's errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.models import registry
from vigil.analytics.models.columns import ArrayStore
from vigil.analytics.models.decide import DecideBank, DecideConfig, Decider
from vigil.analytics.models.robust import RobustBank, RobustConfig, RobustStat, RobustZ

from vigil.config import validate
from vigil.errors import ConfigError


def series(rng: np.random.Generator, ticks: int, k: int) -> np.ndarray:
    """k series: noise around distinct levels, gaps, spikes, and lasting steps in some of them."""
    Y = rng.normal(0, 1, (ticks, k)) * rng.uniform(0.5, 3, k) + rng.uniform(-20, 80, k)
    Y[rng.random(Y.shape) < 0.03] = np.nan
    Y[rng.random(Y.shape) < 0.02] += 30
    for j in range(0, k, 3):  # every third series steps up or down for good
        Y[ticks // 3 :, j] += rng.choice([-1, 1]) * 25
    return Y


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"warmup": 5, "shift_after": 20, "cooldown": 4, "clear_threshold": 2.0},
        {"calibration": "running", "direction": "up", "window": 12, "min_hits": 4, "learn_on_anomaly": True},
    ],
)
def test_bank_forms_equal_their_scalar_twins(options: dict[str, Any]) -> None:
    rng = np.random.default_rng(11)
    robust_opts = {k: v for k, v in options.items() if k in RobustConfig.model_fields}
    model_cfg = RobustConfig(**robust_opts)
    decide_cfg = DecideConfig(**{k: v for k, v in options.items() if k in DecideConfig.model_fields})
    Y = series(rng, 800, 9)
    store = ArrayStore(9)
    bank, decide = RobustBank(model_cfg, store, "m_"), DecideBank(decide_cfg, store, "d_")
    stats, deciders = [RobustStat() for _ in range(9)], [Decider(decide_cfg) for _ in range(9)]
    slots = np.arange(9)
    changes = 0
    for t, y in enumerate(Y):
        z = bank.process(slots, y)
        fire, resolve = decide.update(slots, z, np.full(9, float(t)), np.isfinite(y))
        for j in range(9):
            zs = stats[j].process(float(y[j]), model_cfg)
            assert z[j] == pytest.approx(zs, rel=1e-12, abs=1e-12)
            got = deciders[j].update(float(y[j]) if math.isnan(y[j]) else zs, float(t))
            want = "firing" if fire[j] else "resolved" if resolve[j] else None
            assert got == want, (t, j)
            changes += got is not None
    for j in range(9):
        s, d = stats[j], deciders[j]
        assert [store.col("m_" + k)[j] for k in ("n", "run")] == [s.n, s.run]
        assert store.col("m_mean")[j] == pytest.approx(s.mean) and store.col("m_mad")[j] == pytest.approx(s.mad)
        assert store.col("d_hist")[j] == d.post.hist and bool(store.col("d_active")[j]) == d.post.active
        assert store.col("d_below")[j] == d.post.below
    assert changes >= 3  # the data did exercise the post-rule


def test_a_lasting_level_shift_is_adopted_and_resolves() -> None:
    """The known issue: without learning outliers a lasting step fired forever; now it re-anchors."""
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.normal(100, 2, 300), rng.normal(160, 2, 1200)])  # +30 sigma, for good
    for shift_after, want in ((300, ["firing", "resolved"]), (0, ["firing"])):
        stat, decider = RobustStat(), Decider(DecideConfig())
        config = RobustConfig(shift_after=shift_after)
        got = [(t, d) for t, v in enumerate(y) if (d := decider.update(stat.process(v, config), t))]
        assert [d for _, d in got] == want
        assert 300 <= got[0][0] <= 303
        if shift_after:
            assert 300 + shift_after <= got[1][0] <= 300 + shift_after + 15
            assert stat.mean == pytest.approx(160, abs=1)  # the new level is the baseline
            assert stat.mad == pytest.approx(2 * 0.8, rel=0.3)  # and the noise scale was kept


def test_hysteresis_holds_between_the_two_thresholds_and_cooldown_blocks_refiring() -> None:
    decider = Decider(DecideConfig(threshold=6, clear_threshold=3, cooldown=30, min_hits=2, window=3, clear_after=3))
    scores = [7, 7] + [4.5] * 20 + [1] * 3 + [8] * 5
    got = {t: d for t, s in enumerate(scores) if (d := decider.update(s, float(t)))}
    assert got == {1: "firing", 24: "resolved"}  # 4.5 is below 6 but not calm; 8s at 25.. are in cool-down
    assert decider.update(8, 24 + 30) == "firing"  # cool-down over, still exceeding


def test_one_spike_does_not_fire_and_direction_up_ignores_drops() -> None:
    assert [Decider(DecideConfig()).update(s, 0) for s in (0, 50, 0, 0, 0)] == [None] * 5
    down = Decider(DecideConfig(direction="up"))
    assert [down.update(-20, float(t)) for t in range(5)] == [None] * 5


def test_running_calibration_turns_a_unitless_score_into_sigmas() -> None:
    rng = np.random.default_rng(5)
    raw = np.abs(rng.normal(0.003, 0.0005, 300))  # a reconstruction error: tiny numbers
    raw[250:260] = 0.02
    decider = Decider(DecideConfig(calibration="running", direction="up"), detector="ae")
    got, reason = {}, {}
    for t, s in enumerate(raw):
        if decision := decider.update(float(s), float(t)):
            got[t] = decision
            reason = reason or decider.reason(float(s), ["gpu", "host"], [0.1, 3.0])
    assert list(got.values())[:1] == ["firing"] and 250 <= next(iter(got)) <= 253
    assert reason["detector"] == "ae" and reason["feature"] == "host" and reason["calibrated"] > 6
    assert reason["tail_probability"] < 1e-8 and reason["hits"] >= 3 and reason["window"] == 5


def test_decide_config_rejects_impossible_settings_naming_them() -> None:
    with pytest.raises(ValueError, match="min_hits"):
        DecideConfig(min_hits=6, window=5)
    with pytest.raises(ValueError, match="clear_threshold"):
        DecideConfig(threshold=3, clear_threshold=4)


def test_robust_z_names_the_deviating_feature() -> None:
    model = RobustZ(["temp", "power"])
    rng = np.random.default_rng(6)
    model.learn_many(np.column_stack([rng.normal(60, 1, 100), rng.normal(300, 5, 100)]))
    row = np.array([[60.5, 420.0]])
    contrib = model.explain_many(row)[0]
    assert contrib.argmax() == 1 and model.score_many(row)[0] == contrib.max() > 6


def test_registry_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^eval\.models\[1\]\.name: unknown model 'nope' \(known: .*robust_z"):
        registry.create("nope", key="eval.models[1]")
    with pytest.raises(ConfigError, match=r"^m\.options\.alpha: "):
        registry.create("robust_z", {"alpha": 3}, key="m")
    with pytest.raises(ConfigError, match=r"^m\.options\.colour: unknown key"):
        registry.create_spec({"name": "robust_z", "options": {"colour": "red"}}, key="m")
    model = registry.create_spec({"name": "robust_z", "options": {"shift_after": 7}}, ["x"])
    assert isinstance(model, RobustZ) and model.config.shift_after == 7 and model.features == ["x"]


def test_the_live_zscore_section_names_the_key_of_a_bad_setting() -> None:
    with pytest.raises(ConfigError, match=r"^analytics\.zscore: min_hits \(9\) cannot exceed window \(5\)"):
        validate(AnalyticsConfig, {"zscore": {"min_hits": 9}}, "analytics")
    with pytest.raises(ConfigError, match=r"^analytics\.zscore\.shift_after: "):
        validate(AnalyticsConfig, {"zscore": {"shift_after": -1}}, "analytics")
    assert validate(AnalyticsConfig, {"zscore": {"cooldown": "30s"}}, "analytics").zscore.cooldown == 30.0
