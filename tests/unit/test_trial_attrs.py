"""search.trial_attrs: Keras Tuner's consecutive failures in the order trials finished, epoch times, what a
retry keeps."""

import datetime as dt

from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from search import trial_attrs


def trial(number, state, minute, **attrs):
    t = create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                     params={"x": 1}, distributions={"x": IntDistribution(0, 2)}, user_attrs=attrs)
    t.number = number
    t.datetime_complete = dt.datetime(2026, 1, 1, 0, minute)
    return t


def test_failures_count_in_the_order_trials_finished():
    trials = [trial(0, TrialState.FAIL, 1, fail_reason="a"), trial(1, TrialState.COMPLETE, 2),
              trial(3, TrialState.FAIL, 3, fail_reason="b"), trial(2, TrialState.FAIL, 4, fail_reason="c")]
    assert [t.number for t in trial_attrs.failed_in_a_row(trials)] == [2, 3]


def test_interrupted_trials_and_lost_workers_do_not_count():
    trials = [trial(0, TrialState.COMPLETE, 1), trial(1, TrialState.FAIL, 2, fail_reason="a"),
              trial(2, TrialState.FAIL, 3, fail_reason="interrupted by the user", interrupted=True),
              trial(3, TrialState.FAIL, 4)]  # failed for a stale heartbeat: no reason of its own
    assert [t.number for t in trial_attrs.failed_in_a_row(trials)] == [1]
    assert trial_attrs.failed_in_a_row([trial(0, TrialState.PRUNED, 1)]) == []


def test_steady_epoch_times_leave_the_compiling_first_epoch_apart():
    times = [{"train_seconds": 9.0, "steps": 10}, {"train_seconds": 1.0, "steps": 10},
             {"train_seconds": 2.0, "steps": 10}]
    steady = trial_attrs.steady_epoch_times(trial(0, TrialState.COMPLETE, 1, epoch_times=times))
    assert steady == {"first_epoch_s": 9.0, "steady_sec_per_epoch": 1.5, "steady_ms_per_step": 150.0}
    one = trial_attrs.steady_epoch_times(trial(1, TrialState.PRUNED, 1, epoch_times=times[:1]))
    assert one == {"first_epoch_s": 9.0, "steady_sec_per_epoch": None, "steady_ms_per_step": None}
    old = trial_attrs.steady_epoch_times(trial(2, TrialState.COMPLETE, 1))  # stored before epoch times
    assert old == {"first_epoch_s": None, "steady_sec_per_epoch": None, "steady_ms_per_step": None}


def test_a_retry_starts_from_the_configuration_not_from_the_dead_run():
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    study = optuna.create_study()
    dead = trial(0, TrialState.FAIL, 1, fail_reason="worker killed by SIGKILL", attempt=1,
                 worker={"pid": 7}, history={"loss": [1.0]}, interrupted=True,
                 condition={"classes": 3}, ablation={"param": "x"}, baseline=True,
                 **{"hp.momentum": 0.9})
    RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial_attrs.for_a_retry(dead))
    (queued,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert queued.user_attrs == {"condition": {"classes": 3}, "ablation": {"param": "x"},
                                 "baseline": True, "hp.momentum": 0.9}
    assert queued.params == dead.params and trial_attrs.retry_history(queued) == [0]
    assert dead.user_attrs["worker"] == {"pid": 7}  # the dead run's own record is untouched
