"""Ablation effects are analyzed apart from the search, against the seed noise of the repeats
(the ablation plan itself: tests/unit/space/test_ablation.py)."""

import keras_tuner as kt
import optuna
import pytest

from search.analysis import analyze
from search.space import ablation
from search.testing.synthetic import add_ablation_trials, build_study, space_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_ablation_effects_are_separate_and_measured_against_seed_noise():
    study = build_study(150, seed=2)
    search_only = analyze(study, space=space_config())
    best = search_only.overview["best"]["params"]
    hp = kt.HyperParameters.from_config(space_config())
    plan = ablation.plan(best, hp, ["learning_rate", "batch_size"], repeats=3)
    add_ablation_trials(study, plan)
    result = analyze(study, space=space_config())
    assert result.overview["ablation_trials"] == len(plan)
    # search effects are unchanged by the ablation trials
    assert result.effect("classes").rows.equals(search_only.effect("classes").rows)
    effects = {a.name: a for a in result.ablation}
    assert set(effects) == {"learning_rate", "batch_size"}
    lr = effects["learning_rate"]
    assert lr.center == pytest.approx(best["learning_rate"])
    assert 0.003 < lr.noise_sd < 0.03                      # the synthetic seed noise is 0.01
    rows = lr.rows.set_index("value")
    assert rows.loc[1e-5, "effect_high"] < 0               # far from the best: clearly worse
    center = rows.loc[next(v for v in rows.index if v == pytest.approx(best["learning_rate"]))]
    assert center["effect"] == 0 and center["effect_low"] < 0 < center["effect_high"]
    assert "worse: 1e-5" in lr.verdict
    batch = effects["batch_size"]
    assert "within noise" in batch.verdict and "worse" not in batch.verdict
    # the search tables stay search tables: an ablation measures apart from them
    assert result.effect("learning_rate").confounded is True
    assert result.effect("classes").confounded is True
    # the center the other factors were held at, and the time per value
    assert lr.held["classes"] == best["classes"] and lr.held["optimizer"] == best["optimizer"]
    assert "learning_rate" not in lr.held
    assert lr.chance == pytest.approx(1 / best["classes"])
    times = batch.rows.set_index("value")
    for size in times.index:
        assert times.loc[size, "sec_per_epoch"] == pytest.approx(0.5 + 64 / size)
    assert all("learning_rate" not in n.split("(")[1].split(")")[0].split(", ")
               for n in result.notes if "confounded" in n)
    data = result.to_dict()
    assert {a["name"] for a in data["ablation"]} == {"learning_rate", "batch_size"}


def test_each_value_has_its_own_noise_and_collapse_to_chance_is_flagged():
    import numpy as np
    import pandas as pd

    from search.analysis.ablation_effects import ablation_effect

    rng = np.random.default_rng(0)
    values = {1e-3: (0.95, 0.002), 3e-3: (0.94, 0.05), 1e-1: (0.10, 0.0)}  # mean, seed sd
    rows = []
    for lr, (mean, sd) in values.items():
        for repeat in range(3):
            rows.append({"state": "COMPLETE", "value": mean + rng.normal(0, sd) if sd else mean,
                         "ablation_value": lr, "hp.learning_rate": lr, "hp.classes": 10,
                         "steady_sec_per_epoch": 1.0, "steady_ms_per_step": 2.0, "first_epoch_s": 9.0})
    effect = ablation_effect(pd.DataFrame(rows), "learning_rate", 1e-3, maximize=True)
    table = effect.rows.set_index("value")
    quiet, noisy = table.loc[1e-1], table.loc[3e-3]
    # Welch: the noisy value's interval is wide, the quiet one's narrow (one pooled sd would not)
    assert (noisy["effect_high"] - noisy["effect_low"]) > 5 * (quiet["effect_high"] - quiet["effect_low"])
    assert table.loc[1e-1, "at_chance"] == 3 and table.loc[1e-3, "at_chance"] == 0
    assert "collapsed: 0.1 (stuck at chance 0.1 in 3 of 3)" in effect.verdict
    assert effect.held == {"classes": 10}


def test_two_values_whose_repeats_never_differ_are_compared_on_the_pooled_seed_noise():
    """Seen on a real digits ablation: the center's two repeats and lr 0.1's two (both stuck at
    chance) were each identical, and the interval read "+0..+0", so lr 0.1 (-0.64) was "within
    noise" and lr 1e-3 (+0.015: one validation image) had a zero-width interval."""
    import pandas as pd

    from search.analysis.ablation_effects import ablation_effect

    runs = {1e-5: [0.2, 0.5], 1e-3: [0.985, 0.985], 1.24e-3: [0.970, 0.970], 1e-1: [0.333, 0.333]}
    rows = [{"state": "COMPLETE", "value": v, "ablation_value": lr, "hp.learning_rate": lr, "hp.classes": 3,
             "steady_sec_per_epoch": 1.0, "steady_ms_per_step": 2.0, "first_epoch_s": 9.0}
            for lr, values in runs.items() for v in values]
    effect = ablation_effect(pd.DataFrame(rows), "learning_rate", 1.24e-3, maximize=True)
    table = effect.rows.set_index("value")
    assert table.loc[1e-1, "effect_high"] < 0 and table.loc[1e-1, "effect_low"] < table.loc[1e-1, "effect"]
    assert table.loc[1e-3, "effect_low"] < 0 < table.loc[1e-3, "effect_high"]  # one image: within noise
    assert "0.1 (-0.637, 95%" in effect.verdict and "within noise: 1e-5, 1e-3;" in effect.verdict
    assert table.loc[1.24e-3, "effect"] == 0
    assert table.loc[1e-5, "effect_low"] == -1  # a difference of two accuracies, not -2.6
