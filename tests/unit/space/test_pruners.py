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
