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
    assert result.effect("learning_rate").confounded is False
    assert result.effect("classes").confounded is True
    assert all("learning_rate" not in n.split("(")[1].split(")")[0].split(", ")
               for n in result.notes if "confounded" in n)
    data = result.to_dict()
    assert {a["name"] for a in data["ablation"]} == {"learning_rate", "batch_size"}
