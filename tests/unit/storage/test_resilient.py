"""ResilientRDBStorage's own reads and writes (fewer round trips than Optuna's) give the same
trials as Optuna's RDBStorage, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy import event

from search import storage


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, store_url):
    if request.param == "sqlite":
        return store_url
    return request.getfixturevalue("pg_url")


def _statements(engine):
    """A list that collects every statement the engine runs from now on (SQLite's BEGIN IMMEDIATE,
    which the store adds to every transaction, left out)."""
    seen = []
    event.listen(engine, "before_cursor_execute",
                 lambda *args: None if args[2].startswith("BEGIN") else seen.append(args[2]))
    return seen


def _rich_study(store):
    """A study whose trials hold every kind of content Optuna stores: parameters of each
    distribution, infinite and NaN values and reports, user and system attributes, several
    objectives, a running trial, a waiting one and a failed one."""
    study = optuna.create_study(storage=store, directions=["maximize", "minimize"])
    done = optuna.trial.create_trial(
        params={"x": 0.25, "n": 3, "opt": "adam", "flag": True},
        distributions={"x": FloatDistribution(0, 1), "n": IntDistribution(1, 9, step=2),
                       "opt": CategoricalDistribution(["adam", "sgd"]),
                       "flag": CategoricalDistribution([True, False])},
        values=[float("inf"), -1.5], intermediate_values={0: 0.1, 1: float("nan"),
                                                           2: float("-inf"), 3: float("inf")},
        user_attrs={"history": {"loss": [1.0, 0.5]}, "worker": {"host": "h", "gpu": None},
                    "note": "é"},
        system_attrs={"fixed_params": {"x": 0.25}})
    study.add_trial(done)
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"why": "x"}))
    study.enqueue_trial({"x": 0.5})
    running = study.ask()
    running.suggest_float("x", 0, 1)
    running.set_user_attr("a", 1)
    study.enqueue_trial({"x": 0.75}, user_attrs={"queued": True})
    study.add_trial(optuna.trial.create_trial(params={}, distributions={},
                                              values=[float("-inf"), 2.0]))
    return study


def _assert_same(got, expected):
    assert got._trial_id == expected._trial_id
    assert got.params == expected.params and got.distributions == expected.distributions
    assert list(got.params) == list(expected.params)  # Optuna's order (by param_id)
    assert got.user_attrs == expected.user_attrs and got.system_attrs == expected.system_attrs
    assert got.datetime_start == expected.datetime_start
    assert got.datetime_complete == expected.datetime_complete
    assert (got.number, got.state, got.values) == (expected.number, expected.state, expected.values)
    assert got.intermediate_values.keys() == expected.intermediate_values.keys()
    for step, value in expected.intermediate_values.items():
        assert got.intermediate_values[step] == value or (
            math.isnan(value) and math.isnan(got.intermediate_values[step]))


def test_get_trial_gives_what_optunas_gives_in_two_statements(url):
    ours = storage.open_storage(url)
    study = _rich_study(ours)
    plain = optuna.storages.RDBStorage(url)
    seen = _statements(ours.engine)
    trials = plain.get_all_trials(study._study_id, deepcopy=False)
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING,
                                         TrialState.WAITING}
    for expected in trials:
        before = len(seen)
        _assert_same(ours.get_trial(expected._trial_id), expected)
        assert len(seen) - before == 2  # Optuna: 6 (the trial, then each of five collections)
    plain.engine.dispose()


def test_reads_of_a_studys_trials_give_what_optunas_give_in_three_statements(url):
    ours = storage.open_storage(url)
    study = _rich_study(ours)
    plain = optuna.storages.RDBStorage(url)
    ids = [t._trial_id for t in plain.get_all_trials(study._study_id, deepcopy=False)]
    seen = _statements(ours.engine)
    # Optuna's cache asks for: every trial; those after the last finished one it holds, with the
    # unfinished ones it holds; a state filter; nothing new.
    for states, included, after in [(None, set(), -1), (None, {ids[1]}, ids[2]),
                                    ((TrialState.COMPLETE,), set(), -1),
                                    ((TrialState.RUNNING, TrialState.WAITING), {ids[0]}, ids[1]),
                                    (None, set(), ids[-1])]:
        expected = plain._get_trials(study._study_id, states, included, after)
        before = len(seen)
        got = ours._get_trials(study._study_id, states, included, after)
        assert len(seen) - before == (3 if expected else 2)  # Optuna: 7
        assert [t.number for t in got] == [t.number for t in expected]
        for g, e in zip(got, expected):
            _assert_same(g, e)
    assert len(ours.get_all_trials(study._study_id)) == len(ids)
    with pytest.raises(KeyError):
        ours._get_trials(study._study_id + 100, None, set(), -1)
    plain.engine.dispose()


def test_get_trial_of_no_trial_raises_optunas_key_error(url):
    ours = storage.open_storage(url)
    with pytest.raises(KeyError):
        ours.get_trial(12345)


def test_set_trial_user_attrs_writes_all_in_one_transaction_and_overwrites(url):
    ours = storage.open_storage(url)
    study = optuna.create_study(storage=ours)
    trial = study.ask()
    trial.set_user_attr("kept", "old")
    trial.set_user_attr("replaced", 1)
    commits = []
    event.listen(ours.engine, "commit", lambda conn: commits.append(1))
    seen = _statements(ours.engine)
    ours.set_trial_user_attrs(trial._trial_id, {"replaced": {"a": [1, 2]}, "new": None, "s": "x"})
    assert len(commits) == 1 and len(seen) == 2  # the trial's state checked, one upsert
    plain = optuna.storages.RDBStorage(url)
    assert plain.get_trial(trial._trial_id).user_attrs == {
        "kept": "old", "replaced": {"a": [1, 2]}, "new": None, "s": "x"}
    plain.engine.dispose()


def test_set_trial_user_attrs_refuses_a_finished_trial_as_optuna_does(url):
    ours = storage.open_storage(url)
    study = optuna.create_study(storage=ours)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        ours.set_trial_user_attrs(trial._trial_id, {"late": 1})
    assert "late" not in ours.get_trial(trial._trial_id).user_attrs
