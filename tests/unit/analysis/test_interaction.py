"""search.analysis.interaction: the two-factor ablation grid, its cells and its interaction test."""

import json

import keras_tuner as kt
import numpy as np
import optuna
import pytest
from rich.console import Console

from search.analysis import analyze
from search.analysis.interaction import interaction_test
from search.analysis.report import render_html
from search.console.analysis import render_text
from search.space import ablation
from search.testing.synthetic import add_ablation_trials, build_study, space_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_f_test_finds_a_crossing_and_not_an_additive_grid():
    rng = np.random.default_rng(0)
    first, second, crossing, additive = [], [], [], []
    for a in ("adam", "sgd"):
        for b in (1e-3, 1e-1):
            for _ in range(3):
                first.append(a)
                second.append(b)
                noise = rng.normal(0, 0.01)
                best_b = 1e-3 if a == "adam" else 1e-1  # the best learning rate depends on the optimizer
                crossing.append((0.9 if b == best_b else 0.5) + noise)
                additive.append(0.9 - (0.2 if a == "sgd" else 0) - (0.1 if b == 1e-1 else 0) + noise)
    assert interaction_test(first, second, np.array(crossing)) < 0.001
    assert interaction_test(first, second, np.array(additive)) > 0.05
    assert interaction_test(["a", "b"], [1, 2], np.array([0.1, 0.2])) is None  # no repeats: no test


def test_a_crossed_grid_is_its_own_table_apart_from_the_one_factor_ablation(tmp_path):
    study = build_study(120, seed=3)
    best = analyze(study, space=space_config()).overview["best"]["params"]
    hp = kt.HyperParameters.from_config(space_config())
    plan = ablation.plan(best, hp, ["optimizer", "batch_size"], repeats=3, interaction=True)
    add_ablation_trials(study, plan)
    result = analyze(study, space=space_config())
    assert {a.name for a in result.ablation} == {"optimizer", "batch_size"}  # the grid is not one of them
    (crossed,) = result.interactions
    assert crossed.pair == ["optimizer", "batch_size"] and crossed.label == "optimizer x batch_size"
    by_name = {h.name: h for h in hp.space}
    cells = len(ablation.grid(by_name["optimizer"])) * len(ablation.grid(by_name["batch_size"]))
    assert len(crossed.cells) == cells and set(crossed.cells["trials"]) == {3}
    # the synthetic truth adds the optimizer's and the batch size's effects: no interaction
    assert crossed.p_value > 0.01 and "no interaction detected" in crossed.verdict
    assert "best cell optimizer=" in crossed.verdict
    assert "optimizer" not in crossed.held and crossed.held["classes"] == best["classes"]
    data = json.loads(json.dumps(result.to_dict(), default=str))
    assert data["interactions"][0]["pair"] == ["optimizer", "batch_size"]
    assert len(data["interactions"][0]["cells"]) == cells
    console = Console(width=200, record=True)
    render_text(result, console)
    text = console.export_text()
    assert "Interaction: batch_size (down) x optimizer (across)" in text and "no interaction detected" in text
    page = render_html(result, study)
    assert "Interactions (controlled, two factors crossed)" in page and "fig-interaction-0" in page


@pytest.mark.parametrize("width", [80, 200])
def test_the_grid_table_never_cuts_a_cell(width):
    study = build_study(60, seed=4)
    best = analyze(study, space=space_config()).overview["best"]["params"]
    hp = kt.HyperParameters.from_config(space_config())
    add_ablation_trials(study, ablation.plan(best, hp, ["optimizer", "learning_rate"], repeats=2,
                                             interaction=True))
    console = Console(width=width, record=True)
    render_text(analyze(study, space=space_config()), console)
    assert "…" not in console.export_text()
