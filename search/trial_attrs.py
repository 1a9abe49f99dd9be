"""Every attribute key a trial carries, and the readers that derive a value from several of them.

Written by the worker and runner (``search.execution``), by ``search ablate`` and ``search best``;
read by the status tables, the analysis and the report. User attributes (Optuna's
``trial.user_attrs``):

==========================  ==================================================================
``hp_values``               every active hyperparameter value the trial used (fixed ones too)
``history``                 per-epoch curves of every metric
``metrics``                 the metrics at the best epoch
``best_epoch``, ``epochs``  the best epoch (stored 0-based, Keras' History index; read it with
                            :func:`best_epoch`, counted from 1 as every output does) and how many
                            epochs ran
``train_seconds``           seconds in ``fit``'s epochs; ``trial_seconds``: build and fit
``ms_per_step``             milliseconds per training step
``epoch_times``             ``[{"train_seconds", "steps"}, ...]``: each epoch's training part, in
                            order (read with :func:`steady_epoch_times`: the first epoch compiles)
``trainable_params``        and ``non_trainable_params``: parameter counts
``seed``                    the seed of the trial's weights and shuffling
``fail_reason``             one line, when the trial failed (what tables show)
``fail_detail``             the exception behind it: type, whole message, the last frames of the
                            space's code (bounded; ``search status --format json``)
``fatal``                   the failure stopped the study (Keras Tuner's ``FatalError``)
``interrupted``             the trial was stopped by the user and queued again
``timed_out``               the trial overran ``--trial-timeout``
``attempt``                 1 for a first run, 2 for its first retry, ...
``worker``                  ``{"host", "pid", "slot", "gpu"}`` of the process that ran it
``baseline``                the space's default configuration, run first
``ablation``                ``{"param", "value", "repeat", "center"}`` of an ablation trial
``condition``               the values of the space's ``CONDITIONS`` the trial ran under
``checkpoint``              ``{"state": "saved"|"missing", ...}`` of its best-epoch weights
``test_metrics``            and ``test_samples``: measured later by ``search best --evaluate``
``hp.<name>``               the value used of a parameter that Optuna holds as another variable
                            (a reverse-log one: ``<name>.reverse_log_u``), set when it is sampled
==========================  ==================================================================

System attribute: ``retry_history`` (Optuna's ``RetryHeartbeatStaleTrialCallback``), the numbers of
the trials a retry re-runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the readers take Optuna's trials; reading the keys imports nothing
    from optuna.trial import FrozenTrial

HP_VALUES = "hp_values"
HISTORY = "history"
METRICS = "metrics"
BEST_EPOCH = "best_epoch"
EPOCHS = "epochs"
TRAIN_SECONDS = "train_seconds"
TRIAL_SECONDS = "trial_seconds"
MS_PER_STEP = "ms_per_step"
EPOCH_TIMES = "epoch_times"
TRAINABLE_PARAMS = "trainable_params"
NON_TRAINABLE_PARAMS = "non_trainable_params"
SEED = "seed"
FAIL_REASON = "fail_reason"
FAIL_DETAIL = "fail_detail"
FATAL = "fatal"
INTERRUPTED = "interrupted"
TIMED_OUT = "timed_out"
ATTEMPT = "attempt"
WORKER = "worker"
BASELINE = "baseline"
ABLATION = "ablation"
CONDITION = "condition"
CHECKPOINT = "checkpoint"
TEST_METRICS = "test_metrics"
TEST_SAMPLES = "test_samples"

USED_VALUE_PREFIX = "hp."  # + a parameter's name: its value used (search.space.bridge)

RETRY_HISTORY = "retry_history"  # system attribute of Optuna's RetryHeartbeatStaleTrialCallback

LOST_WORKER_REASON = "worker lost (no heartbeat)"


# What a trial's retry keeps from it: why this configuration runs and the values it uses. What
# one run produced (its curves, worker, failure, attempt) belongs to that run alone; Optuna's
# retry callback would copy every user attribute.
_KEPT_BY_A_RETRY = (BASELINE, ABLATION, CONDITION)


def for_a_retry(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` as its retry should start from (for Optuna's ``RetryHeartbeatStaleTrialCallback``):
    only the attributes of its configuration, so a queued copy never shows the dead run's worker
    or failure."""
    import copy

    kept = copy.copy(trial)
    kept.user_attrs = {key: value for key, value in trial.user_attrs.items()
                       if key in _KEPT_BY_A_RETRY or key.startswith(USED_VALUE_PREFIX)}
    return kept


def hp_values(trial: FrozenTrial) -> dict:
    """The hyperparameter values a trial used (Optuna's params where the runner recorded none)."""
    return dict(trial.user_attrs.get(HP_VALUES) or trial.params)


def used_value_key(name: str) -> str:
    """The user attribute holding the value used of ``name`` (where Optuna holds another variable)."""
    return USED_VALUE_PREFIX + name


def best_epoch(trial: FrozenTrial) -> int | None:
    """The best epoch counted from 1 ("epoch 3 of 10", as Keras' progress bar counts), the way
    every table, JSON, CSV and report shows it."""
    epoch = trial.user_attrs.get(BEST_EPOCH)
    return epoch + 1 if isinstance(epoch, int) else None


def epoch_times(trial: FrozenTrial) -> list[dict]:
    """Each epoch's ``{"train_seconds", "steps"}`` (empty for a trial stored before they were)."""
    return [e for e in trial.user_attrs.get(EPOCH_TIMES) or []
            if isinstance(e, dict) and "train_seconds" in e]


def steady_epoch_times(trial: FrozenTrial) -> dict:
    """The trial's time cost with the first epoch (which compiles) apart: ``first_epoch_s``, and
    over the epochs after it ``steady_sec_per_epoch`` (their mean training seconds) and
    ``steady_ms_per_step``; ``None`` where the trial ran too few epochs or stored no epoch times."""
    times = epoch_times(trial)
    later = times[1:]
    seconds = sum(e["train_seconds"] for e in later)
    steps = sum(int(e.get("steps") or 0) for e in later)
    return {"first_epoch_s": times[0]["train_seconds"] if times else None,
            "steady_sec_per_epoch": seconds / len(later) if later else None,
            "steady_ms_per_step": 1000.0 * seconds / steps if steps else None}


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of the trials this one re-runs, oldest first (empty for a first run)."""
    return list(trial.system_attrs.get(RETRY_HISTORY) or [])


def attempt(trial: FrozenTrial) -> int:
    """1 for a first run, 2 for its first retry, ..."""
    return len(retry_history(trial)) + 1


def requeued_as(trials: list[FrozenTrial]) -> dict[int, int]:
    """Trial number -> the number of the copy that re-ran it (after a lost worker or Ctrl-C)."""
    again = {}
    for t in trials:
        history = retry_history(t)
        if history:
            again[history[-1]] = t.number
    return again


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of trials that were queued again (after a lost worker or an interruption)."""
    return {number for t in trials for number in retry_history(t)}


def interrupted(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(INTERRUPTED))


def fail_reason(trial: FrozenTrial, requeued: int | None = None) -> str | None:
    """Why a trial failed: the runner's reason, or a lost worker (failed for a stale heartbeat)."""
    reason = trial.user_attrs.get(FAIL_REASON)
    failed = trial.state.name == "FAIL"
    if failed and reason is None:
        reason = LOST_WORKER_REASON
    if failed and requeued is not None:
        reason = f"{reason}; re-run as trial {requeued}"
    return reason


def worker_pid(trial: FrozenTrial) -> int | None:
    return (trial.user_attrs.get(WORKER) or {}).get("pid")


def failed_in_a_row(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The failed trials at the end of the study's finished trials in the order they finished
    (Keras Tuner's consecutive failures), last first. Trials queued again and interrupted ones
    are left out, and so are those failed for a lost worker (no reason of their own): they say
    nothing about the configurations."""
    again = superseded(trials)
    ended = sorted((t for t in trials if t.state.is_finished() and t.datetime_complete is not None
                    and t.number not in again and not interrupted(t)),
                   key=lambda t: (t.datetime_complete, t.number))
    run = []
    for t in reversed(ended):
        if t.state.name != "FAIL":
            break
        if t.user_attrs.get(FAIL_REASON) is not None:
            run.append(t)
    return run
