"""The pruners are Optuna's own, and each stops its trial on request (Ctrl-C)."""

import optuna
import pytest

from search.space.pruners import make_pruner


@pytest.mark.parametrize("name, cls", [("none", optuna.pruners.NopPruner),
                                       ("median", optuna.pruners.MedianPruner),
                                       ("hyperband", optuna.pruners.HyperbandPruner),
                                       ("asha", optuna.pruners.SuccessiveHalvingPruner)])
def test_pruners_are_optunas_and_stop_on_request(name, cls):
    pruner = make_pruner(name, max_epochs=9)
    assert isinstance(pruner, cls)  # Optuna's own class (Hyperband's brackets depend on it)
    study = optuna.create_study(pruner=pruner, direction="maximize")
    trial = study.ask()
    trial.report(0.5, 0)
    assert not trial.should_prune()  # one report, first trial: no pruner stops it
    pruner.stop.set()
    assert trial.should_prune()  # Ctrl-C: stop at the end of this epoch


@pytest.mark.parametrize("name", ["median", "asha"])
def test_a_trial_under_a_swept_condition_is_compared_with_its_conditions_trials_only(name):
    """Easy 3-class trials score 0.9 at epoch 1, hard 10-class ones 0.3: a 10-class trial at
    0.35 is better than its condition's median and is kept, whatever the 3-class trials scored;
    without conditions it would be pruned against all of them."""
    pruner = make_pruner(name, max_epochs=9)
    study = optuna.create_study(pruner=pruner, direction="maximize")
    for condition, value in [({"classes": 3}, 0.9)] * 6 + [({"classes": 10}, 0.3)] * 6:
        trial = study.ask()
        trial.set_user_attr("condition", condition)
        trial.report(value, 1)
        trial.should_prune()  # what a worker asks each epoch (successive halving records its rung)
        study.tell(trial, value)
    hard = study.ask()
    hard.set_user_attr("condition", {"classes": 10})
    hard.report(0.35, 1)
    assert not hard.should_prune()
    unconditioned = study.ask()
    unconditioned.report(0.35, 1)
    assert unconditioned.should_prune()  # against every trial, it is below the median
    easy = study.ask()
    easy.set_user_attr("condition", {"classes": 3})
    easy.report(0.35, 1)
    assert easy.should_prune()  # against its own condition's 0.9
