"""The replay of recorded learning curves (bench/spaces/replay.py) on a tiny hand-written table:
through the service's own start and worker loop, and through Keras Tuner's RandomSearch and
Hyperband (the table's format and grids: test_curves.py)."""

import math

import keras_tuner as kt
import optuna
import pytest

from bench import curves
from bench.spaces import replay

from .tiny_table import DIVERGES, TINY, E, curve_of


def run_study(tmp_path, pruner: str, trials: int, fixed=None, sampler="tpe"):
    from search.commands.start import prepare
    from search.execution.worker import run_worker
    from search.options import start_options

    url = f"sqlite:///{tmp_path / 'store.db'}"
    prepared = prepare(start_options(str(curves.BENCH / "spaces" / "replay.py"), fixed=fixed,
                                     study="replay", storage=url, trials=trials, epochs=E,
                                     sampler=sampler, seed=0, pruner=pruner))
    prepared.stored.storage.engine.dispose()
    run_worker(url, "replay", slot=0)
    return optuna.load_study(study_name="replay", storage=url).get_trials(deepcopy=False)


def config_of(trial) -> dict:
    return {k: v for k, v in trial.params.items()}


def test_the_service_trains_a_trial_on_its_recorded_epochs(tmp_path, table):
    trials = run_study(tmp_path, "none", trials=6)
    assert len(trials) == 6
    for trial in trials:
        recorded = table.get("tiny", 0, config_of(trial))["epochs"]
        history = trial.user_attrs["history"]
        if config_of(trial) == DIVERGES:
            assert trial.state == optuna.trial.TrialState.FAIL
            continue
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert history["val_accuracy"] == recorded["val_accuracy"]
        assert history["replay_seconds"] == recorded["cpu_seconds"]
        assert trial.value == max(recorded["val_accuracy"])
    # the space's default first (Keras Tuner's defaults of the grid's Choices: the real space's)
    assert config_of(trials[0]) == TINY.default() == {"units": 16, "deep": False}


def test_a_pruned_trial_stops_where_the_pruner_said(tmp_path, table):
    trials = run_study(tmp_path, "hyperband", trials=12, sampler="random")
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.PRUNED in states  # made-up curves differ: hyperband stops some
    for trial in trials:
        if config_of(trial) == DIVERGES:
            continue
        recorded = table.get("tiny", 0, config_of(trial))["epochs"]
        seen = trial.user_attrs["history"]["val_accuracy"]
        assert seen == recorded["val_accuracy"][:len(seen)]
        assert (len(seen) < E) == (trial.state == optuna.trial.TrialState.PRUNED)
        assert trial.intermediate_values == dict(enumerate(seen))


def test_a_diverged_recording_fails_its_trial_as_in_training(tmp_path, table):
    trials = run_study(tmp_path, "none", trials=1, fixed=DIVERGES)
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert "diverged" in trials[0].user_attrs["fail_reason"]


def test_keras_tuner_random_search_scores_each_trial_by_its_recorded_best(tmp_path, table):
    hypermodel = replay.Replay()
    tuner = kt.RandomSearch(hypermodel, objective=kt.Objective("val_accuracy", "max"), max_trials=5,
                            seed=1, directory=str(tmp_path), project_name="random")
    tuner.search(epochs=E, verbose=0)
    done = tuner.oracle.get_best_trials(len(tuner.oracle.trials))
    assert len(done) == 5
    for trial in done:
        config = dict(trial.hyperparameters.values)
        recorded = table.get("tiny", 0, config)["epochs"]["val_accuracy"]
        assert trial.score == max(recorded)
    assert len(hypermodel.trained) == sum(
        len(table.get("tiny", 0, dict(t.hyperparameters.values))["epochs"]["val_accuracy"]) for t in done)


def test_keras_tuner_hyperband_replays_a_promoted_trial_from_its_initial_epoch(tmp_path, table):
    hypermodel = replay.Replay()
    tuner = kt.Hyperband(hypermodel, objective=kt.Objective("val_accuracy", "max"), max_epochs=E,
                         factor=3, seed=1, directory=str(tmp_path), project_name="hyperband")
    tuner.search(epochs=E, verbose=0)
    promoted = 0
    for trial in tuner.oracle.trials.values():
        values = dict(trial.hyperparameters.values)
        start, end = values.pop("tuner/initial_epoch"), values.pop("tuner/epochs")
        for name in ("tuner/bracket", "tuner/round", "tuner/trial_id"):
            values.pop(name, None)
        recorded = table.get("tiny", 0, values)["epochs"]["val_accuracy"]
        if start >= len(recorded):  # the diverged recording ended before this round
            continue
        assert trial.score == max(recorded[start:end])
        promoted += start > 0
    assert promoted > 0
    starts = {epoch for _, epoch, _, _ in hypermodel.trained}
    assert min(starts) == 0 and max(starts) == E - 1
    # what it charged: the recorded cost of every epoch it replayed
    assert all(math.isclose(cost, table.get("tiny", 0, _config(key))["epochs"]["cpu_seconds"][epoch])
               for key, epoch, _, cost in hypermodel.trained)


def test_a_configuration_missing_from_the_table_is_named(tmp_path, table, monkeypatch):
    path = tmp_path / "partial.jsonl.gz"
    curves.append_record(path, curve_of(0, {"units": 8, "deep": False}))
    hypermodel = replay.Replay(table_path=path)
    hp = kt.HyperParameters()
    with pytest.raises(LookupError, match='"units":16'):
        hypermodel.build(hp)


def _config(key: str) -> dict:
    import json

    return json.loads(key)
