"""A worker: one process that takes trials of a study until its budget is spent.

It needs only the store and the study name: the configuration and the space's source come from
the study's record. Data is loaded once per process and reused by every trial. Each trial first
claims a slot of the study's budget (an atomic update in the store), so the budget is exact
however many workers run, on however many machines.

Faults (see ``search.execution.faults`` for heartbeats, timeouts and signals):

- Budget: a trial failed for staleness and retried gives its slot back, so its retry runs on the
  same slot: a study always ends with ``budget`` trials that were not superseded by a retry (and
  a trial whose retries are exhausted keeps its slot, as a failure). Interrupted trials alike.
- A worker whose claim fails waits while other workers' trials are still running: one of them may
  die, and its retry must find a worker. It exits when no trial is running or left to claim.
- Ctrl-C (SIGINT): the running trial stops at the end of its current epoch (the pruner answers
  the next report with "prune"), is marked FAIL with ``interrupted`` and queued again with the
  same parameters, and the worker exits. A second Ctrl-C, or SIGTERM, stops at once the same way.
- A trial that hangs past ``--trial-timeout`` is FAIL with ``timed out`` as its reason (not
  retried: the configuration is what hangs) and the worker goes on with the next trial.
- The space source: workers execute the source stored with the study (whoever can write to the
  store decides what they run); ``search worker --space FILE`` refuses a source that is not FILE's,
  and the paths the study reads and writes unless they are pinned too (``search.execution.pins``).
- Stopping the study (Keras Tuner's rules): a trial that fails as fatal (``FatalError``), or the
  ``max_consecutive_failures``-th failed trial in a row (Keras Tuner's
  ``max_consecutive_failed_trials``), stops the study: the reason is stored with it, no worker
  claims another trial (others finish the one they run), and every worker raises
  :class:`~search.errors.StudyStopped` with the reason. A resume clears the stop.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import keras_tuner as kt
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from search import _datasets, trial_attrs
from search.errors import SearchError, StudyStopped
from search.execution.checkpoints import Checkpoints
from search.execution.devices import pin_this_process, pinned_gpu
from search.execution.faults import (
    IDLE,
    RESTARTED_ENV,
    SETUP,
    STORE_ERRORS,
    STORING,
    Heartbeat,
    PhaseFile,
    StopSignals,
    TrialTimeout,
    fail_stale_trials,
    fail_stuck_trial,
    failed_in_a_row_reason,
    open_for_work,
    timeout_reason,
    trial_alarm,
    watch_pool,
)
from search.execution.launchers import job_of_this_process
from search.execution.pins import Pins
from search.execution.pool import WorkerReport
from search.execution.runner import TrialOutcome, record, run_trial
from search.execution.trust import first_use_note
from search.options import StudyConfig
from search.space.loader import Space, space_from_source
from search.space.pruners import make_pruner
from search.space.samplers import make_sampler, worker_seed
from search.space.source import source_sha256
from search.storage import StudyRecord, StudyRecords, retrying, set_user_attrs, url_of, waiting_for_writable
from search.storage import workers as worker_states
from search.study import StoredStudy

_log = logging.getLogger("search.worker")


def space_hyperparameters(config: StudyConfig) -> kt.HyperParameters:
    return kt.HyperParameters.from_config(config.space) if config.space else kt.HyperParameters()


def local_space_note(record: StudyRecord) -> str | None:
    """A line for the user when this machine's copy of the space file differs from the stored one."""
    try:
        with open(record.space_path, encoding="utf-8-sig") as f:
            local = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    if source_sha256(local) == source_sha256(record.space_source):
        return None
    return (f"{record.space_path} here differs from the source stored with the study: "
            "running the stored source")


def stored_space(stored: StoredStudy) -> Space:
    """The study's space from its stored source (a space module, or a tuner's script)."""
    record, config = stored.record, stored.config
    if config.source_kind == "notebook":
        raise SearchError(
            f"study {record.study_name!r} was started by search.Tuner in a notebook: its hypermodel "
            "has no source file, so only that notebook's tuner.search() runs its trials; to add "
            "workers, move the hypermodel into a .py file (a space module: search start FILE, or a "
            "script that runs the tuner)")
    return space_from_source(record.space_source, record.space_path,
                             script_of=record.study_name if config.source_kind == "script" else None)


def run_worker(storage_url: str | None, study_name: str, slot: int | None = None,
               gpu: str | None = None,
               on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
               on_note: Callable[[str], None] | None = None,
               stop: threading.Event | None = None, pins: Pins | None = None,
               restart_when_stuck: bool = False, pool_pid: int | None = None,
               space: Space | None = None, callbacks: list | tuple = (),
               phase_file: str | None = None) -> WorkerReport:
    """Take trials until the study's budget is spent; returns what this worker ran.

    ``gpu`` pins this process to one GPU first; ``stop``, once set, ends the worker after the
    current epoch of its running trial (which is queued again). ``pins``: refuse to run unless the
    study is what they say (``search worker --space FILE``, ``--data``, ``--artifacts``).
    ``restart_when_stuck``: when a trial overruns its timeout where no signal stops it, fail it
    and start this process afresh (``exec``: command-line workers only). ``pool_pid``: this
    worker's pool (its parent); once it is gone, the worker finishes its running trial and exits
    (``report.pool_gone``). ``space``: run this space instead of the stored source, with
    ``callbacks`` in every trial (``search.Tuner``). ``phase_file``: where this worker keeps
    the trial it runs and its step (:class:`~search.execution.faults.PhaseFile`), for the pool
    that started it to name when it dies.
    """
    pin_this_process(gpu)
    pins = pins or Pins()
    stored = open_for_work(storage_url, study_name)
    pins.check(stored.record, url_of(stored.storage))
    if stored.record.stopped:
        raise StudyStopped(study_name, stored.record.stopped)
    config = stored.config
    report = WorkerReport()
    notes = [] if pins.pinned else [local_space_note(stored.record)]
    if space is None and not pins.pinned and pins.config_sha256 is None \
            and stored.config.source_kind != "notebook":
        # the user's own command runs the stored source unpinned (a pool's workers were pinned
        # by the coordinator that checked the study; search.Tuner runs its own space)
        notes.append(first_use_note(url_of(stored.storage), study_name, stored.record.space_source))
    restarted_after = os.environ.pop(RESTARTED_ENV, None)
    if restarted_after is not None:
        notes.append(f"this worker restarted: trial {restarted_after} did not stop after its "
                     "timeout and was failed")
    for note in filter(None, notes):
        report.notes.append(note)
        if on_note is not None:
            on_note(note)
    if space is None:
        space = stored_space(stored)
    dataset = _datasets.load(config.data, config.seed)
    if slot is None:
        slot = os.getpid()
    stop = stop or threading.Event()
    pool_gone = threading.Event()
    if pool_pid is not None:
        watch_pool(pool_pid, pool_gone)
    sampler = make_sampler(config.sampler, worker_seed(config.seed, slot),
                           space_hyperparameters(config), config.fixed)
    study = retrying(lambda: optuna.load_study(
        study_name=study_name, storage=stored.storage, sampler=sampler,
        pruner=make_pruner(config.pruner, config.epochs, stop)), "load study")
    worker_id = stored.workers.register(study_name, socket.gethostname(), os.getpid(), slot,
                                        pinned_gpu(), job=job_of_this_process())
    heartbeat = Heartbeat(stored, worker_id, lambda trial_id: fail_stuck_trial(
        stored, worker_id, trial_id, restart=restart_when_stuck))
    heartbeat.start()
    # Libraries, data and study are loaded for good: leave them out of the full collection that
    # every trial's clear_session() runs (hundreds of ms each with a backend loaded, otherwise).
    gc.freeze()
    final_state = worker_states.EXITED
    phases = PhaseFile(phase_file)
    try:
        with StopSignals(stop), waiting_for_writable():
            _loop(stored, study, space, dataset, slot, worker_id, heartbeat, stop, report, on_trial,
                  pool_gone, callbacks, phases)
    except KeyboardInterrupt:
        report.interrupted = True
        final_state = worker_states.INTERRUPTED
        raise
    finally:
        gc.unfreeze()  # a notebook's objects are its own again
        phases.close()
        heartbeat.stop()
        if stop.is_set():
            report.interrupted = True
            final_state = worker_states.INTERRUPTED
        report.pool_gone = pool_gone.is_set()
        try:
            stored.workers.set_state(worker_id, final_state)
        except STORE_ERRORS as exc:  # the store is gone: the row goes stale on its own
            _log.warning("worker state not recorded: %s", exc)
    return report


def _loop(stored: StoredStudy, study: optuna.Study, space, dataset, slot: int,
          worker_id: int, heartbeat: Heartbeat, stop: threading.Event, report: WorkerReport,
          on_trial, pool_gone: threading.Event, callbacks=(), phases: PhaseFile | None = None) -> None:
    config, study_name = stored.config, stored.name
    checkpoints = Checkpoints.of(stored.storage, stored.study_id, config)  # best-epoch weights, top K kept
    phases = phases or PhaseFile(None)
    while not stop.is_set() and not pool_gone.is_set():
        fail_stale_trials(study)
        if not stored.records.claim(study_name):
            stopped = stored.records.get(study_name).stopped
            if stopped:
                raise StudyStopped(study_name, stopped)
            if _others_may_need_a_retry(stored):
                stored.workers.set_state(worker_id, worker_states.WAITING)
                stop.wait(config.heartbeat)
                continue
            return
        trial = retrying(study.ask, "ask")
        phases.set(trial._trial_id, trial.number, SETUP)
        heartbeat.trial_id = trial._trial_id
        heartbeat.beat()  # Optuna only reaps trials that have a heartbeat: stamp it at once
        stored.workers.set_state(worker_id, worker_states.RUNNING, trial.number)
        frozen = stored.storage.get_trial(trial._trial_id)
        attempt = trial_attrs.attempt(frozen)
        set_user_attrs(trial, {trial_attrs.WORKER: {"host": socket.gethostname(), "pid": os.getpid(),
                                                    "slot": slot, "gpu": pinned_gpu()},
                               trial_attrs.ATTEMPT: attempt})
        timeout = config.trial_timeout
        if timeout:
            heartbeat.stuck_after = time.monotonic() + timeout + config.grace
        try:
            with trial_alarm(timeout):
                outcome = run_trial(trial, space, dataset, config, callbacks,
                                    lambda phase: phases.set(trial._trial_id, trial.number, phase))
        except TrialTimeout as exc:
            outcome = TrialOutcome(TrialState.FAIL, reason=timeout_reason(exc.seconds),
                                   attrs={trial_attrs.FAIL_REASON: timeout_reason(exc.seconds),
                                          trial_attrs.TIMED_OUT: True})
            _log.warning("trial %d %s", trial.number, outcome.reason)
        except KeyboardInterrupt:
            requeue(study, trial, stored.records, study_name)
            raise
        finally:
            heartbeat.trial_id = heartbeat.stuck_after = None
        if stop.is_set() and outcome.state == TrialState.PRUNED:
            if (outcome.attrs.get(trial_attrs.EPOCHS) or 0) >= config.epochs:
                # Ctrl-C came at its last epoch: it ran in full, so it is complete, not re-run
                outcome.state = TrialState.COMPLETE
            else:
                requeue(study, trial, stored.records, study_name)  # stopped by Ctrl-C, not pruned
                return
        phases.set(trial._trial_id, trial.number, STORING)
        checkpoints.keep_trial(trial, outcome)
        finished = _tell(study, trial, outcome)
        told = finished is not None
        phases.set(None, None, IDLE)
        checkpoints.settle(trial.number, told)
        stored.workers.set_state(worker_id, worker_states.IDLE, finished_trial=True)
        report.trials += 1
        report.complete += outcome.state == TrialState.COMPLETE
        report.pruned += outcome.state == TrialState.PRUNED
        report.failed += outcome.state == TrialState.FAIL
        if told:
            _log.info("trial %d %s value %s", finished.number, finished.state.name.lower(),
                      finished.value)
            if on_trial is not None:
                on_trial(finished)
            if outcome.state == TrialState.FAIL:
                reason = stop_reason(stored, finished, outcome)
                if reason:
                    raise StudyStopped(study_name, stored.records.stop(study_name, reason))


def stop_reason(stored: StoredStudy, trial: optuna.trial.FrozenTrial, outcome: TrialOutcome) -> str | None:
    """Why the study stops after this failed trial (Keras Tuner's rules), or None."""
    if outcome.fatal:
        return f"trial {trial.number} failed with a fatal error: {outcome.reason}"
    return failed_in_a_row_reason(stored, trial)


def _others_may_need_a_retry(stored: StoredStudy) -> bool:
    """Whether to wait instead of exiting: trials of other workers still run (one may die and be
    queued again) and the deadline, if any, is not past."""
    if stored.records.get(stored.name).past_deadline:
        return False
    running = stored.storage.get_all_trials(stored.study_id, deepcopy=False, states=(TrialState.RUNNING,))
    return bool(running)


def _tell(study: optuna.Study, trial: optuna.Trial,
          outcome: TrialOutcome) -> optuna.trial.FrozenTrial | None:
    """Store the outcome; the finished trial as the store holds it now (what ``study.tell``
    read back), or None when the trial was already failed for a stale heartbeat (this worker
    was thought dead, and a retry of the trial is queued)."""
    try:
        record(trial, outcome)
        if outcome.state == TrialState.COMPLETE:
            return retrying(lambda: study.tell(trial, outcome.value), "tell")
        return retrying(lambda: study.tell(trial, state=outcome.state), "tell")
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            _log.warning("trial %d was failed for a stale heartbeat while it ran; its retry "
                         "stands (%s)", trial.number, exc)
            return None
        raise


def requeue(study: optuna.Study, trial: optuna.Trial, records: StudyRecords,
            study_name: str) -> None:
    """An interrupted trial: FAIL it as ``interrupted``, queue a WAITING copy with the same
    parameters (Optuna's retry callback, so the attempt chain is recorded alike) and give its
    budget slot back, so the copy runs on it."""
    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state.is_finished():  # failed as stale meanwhile: its retry is already queued
        return
    trial.set_user_attr(trial_attrs.INTERRUPTED, True)
    trial.set_user_attr(trial_attrs.FAIL_REASON, "interrupted by the user")
    study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial_attrs.for_a_retry(frozen))
    records.release(study_name)


def recount_claims(stored: StoredStudy) -> int:
    """Budget slots in use: every trial of the study that was started, except those queued again
    (their copy takes the slot) and interrupted ones (a WAITING trial, such as the baseline or a
    retry, takes its slot when a worker claims it)."""
    trials = stored.storage.get_all_trials(stored.study_id, deepcopy=False)
    again = trial_attrs.superseded(trials)
    return sum(1 for t in trials
               if t.state != TrialState.WAITING and t.number not in again
               and not trial_attrs.interrupted(t))
