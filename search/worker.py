"""A worker: one process that takes trials of a study until its budget is spent.

It needs only the store and the study name: the configuration and the space's source come from
the study's record. Data is loaded once per process and reused by every trial. Each trial first
claims a slot of the study's budget (an atomic update in the store), so the budget is exact
however many workers run, on however many machines.

Faults:

- Heartbeats (Optuna's RDB heartbeat, which ``study.optimize`` would run; workers use ask/tell, so
  a thread of ours runs it): while a trial runs, a background thread stamps it every
  ``heartbeat_s`` seconds, and the worker's row in the workers table with it. Before each claim
  every worker, and the coordinator's poll loop, call ``optuna.storages.fail_stale_trials``: a
  RUNNING trial whose stamp is older than ``grace_s`` (its worker died) becomes FAIL, and
  Optuna's ``RetryHeartbeatStaleTrialCallback`` queues a WAITING copy with the same parameters,
  at most ``max_retry`` times per trial. The copy records the chain in its system attribute
  ``retry_history``; every trial a worker runs records its ``attempt`` (1 for a first run).
- Budget: a trial failed for staleness and retried gives its slot back, so its retry runs on the
  same slot: a study always ends with ``budget`` trials that were not superseded by a retry (and
  a trial whose retries are exhausted keeps its slot, as a failure). Interrupted trials alike.
- A worker whose claim fails waits while other workers' trials are still running: one of them may
  die, and its retry must find a worker. It exits when no trial is running or left to claim.
- Ctrl-C (SIGINT): the running trial stops at the end of its current epoch (the pruner answers
  the next report with "prune"), is marked FAIL with ``interrupted`` and queued again with the
  same parameters, and the worker exits. A second Ctrl-C, or SIGTERM, stops at once the same way.
- A trial that hangs (``--trial-timeout``, stored with the study): a timer (SIGALRM) stops it after
  the timeout wherever Python runs; it is FAIL with ``timed out`` as its reason (not retried: the
  configuration is what hangs) and the worker goes on with the next trial. A trial stuck where no
  signal reaches it (native code) is failed by the heartbeat thread after the timeout plus the
  grace period, and a command-line worker then starts afresh in the same process (``exec``).
- The space source: workers execute the source stored with the study (whoever can write to the
  store decides what they run); ``search worker --space FILE`` refuses a source that is not FILE's.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import keras_tuner as kt
import optuna
import sqlalchemy.exc
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

import storage
from search import data as data_module
from search.artifacts import Checkpoints
from search.config import StudyConfig
from search.devices import pin_this_process, pinned_gpu
from search.errors import SearchError
from search.handle import StaleTrialRetry, StudyHandle, open_study_handle  # noqa: F401 (re-exported)
from search.pruners import make_pruner
from search.runner import TrialOutcome, record, run_trial
from search.samplers import make_sampler, worker_seed
from search.space import source_sha256, space_from_source
from storage import workers as worker_states

STORE_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
INTERRUPTED_ATTR = "interrupted"
ATTEMPT_ATTR = "attempt"
TIMED_OUT_ATTR = "timed_out"
# Set in the environment of a worker that restarted itself after a trial it could not stop.
RESTARTED_ENV = "SEARCH_WORKER_RESTARTED_AFTER"

_log = logging.getLogger("search.worker")

# Optuna warns that its heartbeat is meant for study.optimize(); running it beside ask/tell is
# exactly what this module does, on purpose.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def space_hyperparameters(config: StudyConfig) -> kt.HyperParameters:
    return kt.HyperParameters.from_config(config.space) if config.space else kt.HyperParameters()


def check_space_source(record: storage.StudyRecord, expected_sha256: str | None,
                       expected_from: str | None = None) -> None:
    """Refuse a stored space source that is not the expected one (``search worker --space``)."""
    if expected_sha256 is None:
        return
    stored = source_sha256(record.space_source)  # the source itself, not the hash beside it
    if stored == expected_sha256:
        return
    given = f"--space {expected_from}" if expected_from else "the space file it was started with"
    raise SearchError(
        f"refusing to run study {record.study_name!r}: the space source stored with it "
        f"(sha256 {stored[:12]}) is not {given} (sha256 {expected_sha256[:12]}); "
        "find out who changed the file or the study before running it")


def local_space_note(record: storage.StudyRecord) -> str | None:
    """A line for the user when this machine's copy of the space file differs from the stored one."""
    try:
        with open(record.space_path, encoding="utf-8") as f:
            local = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    if source_sha256(local) == source_sha256(record.space_source):
        return None
    return (f"{record.space_path} here differs from the source stored with the study: "
            "running the stored source")


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's reaper: fail RUNNING trials whose heartbeat is older than the grace period, and
    hand each to the storage's retry callback."""
    storage.retrying(lambda: optuna.storages.fail_stale_trials(study), "fail stale trials")


@dataclass
class WorkerReport:
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


class TrialTimeout(BaseException):
    """The running trial overran the study's trial timeout (a BaseException, so that the runner's
    handling of a failing configuration does not take it for one)."""

    def __init__(self, seconds: float):
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds = seconds


def timeout_reason(seconds: float, restarted: bool = False) -> str:
    reason = f"timed out: still running after {seconds:g} s (--trial-timeout)"
    return reason + ("; it could not be stopped, so its worker restarted" if restarted else "")


@contextmanager
def trial_alarm(seconds: float | None):
    """Raise :class:`TrialTimeout` in the main thread once ``seconds`` have passed (SIGALRM)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TrialTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Heartbeat:
    """The worker's heartbeat thread: stamps the running trial (Optuna) and the worker's row,
    and calls ``on_stuck(trial_id)`` once a trial runs past ``stuck_after`` (a monotonic time)."""

    def __init__(self, handle: StudyHandle, worker_id: int,
                 on_stuck: Callable[[int], None] | None = None):
        self.handle = handle
        self.worker_id = worker_id
        self.trial_id: int | None = None
        self.stuck_after: float | None = None
        self.on_stuck = on_stuck
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=self.handle.config.heartbeat_s + 5)

    def beat(self) -> None:
        trial_id = self.trial_id
        if trial_id is not None:
            self.handle.storage.record_heartbeat(trial_id)
        self.handle.workers.beat(self.worker_id)

    def _run(self) -> None:
        while not self._done.wait(self.handle.config.heartbeat_s):
            try:
                self.beat()
            except STORE_ERRORS as exc:  # the store is gone for longer than the retries: keep trying
                _log.warning("heartbeat not recorded: %s", exc)
            trial_id, stuck_after = self.trial_id, self.stuck_after
            if trial_id is not None and stuck_after is not None and time.monotonic() > stuck_after:
                self.stuck_after = None  # once per trial
                _log.warning("trial (id %d) did not stop after its timeout", trial_id)
                if self.on_stuck is not None:
                    self.on_stuck(trial_id)


class _Signals:
    """SIGINT: stop after the current epoch; a second SIGINT or SIGTERM: stop now."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig, handler in ((signal.SIGINT, self._interrupt), (signal.SIGTERM, self._terminate)):
                self.previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _interrupt(self, signum, frame):
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def _terminate(self, signum, frame):
        self.stop.set()
        raise KeyboardInterrupt


def run_worker(storage_url: str | None, study_name: str, slot: int | None = None,
               gpu: str | None = None,
               on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
               on_note: Callable[[str], None] | None = None,
               stop: threading.Event | None = None, expected_sha256: str | None = None,
               expected_from: str | None = None,
               restart_when_stuck: bool = False) -> WorkerReport:
    """Take trials until the study's budget is spent; returns what this worker ran.

    ``gpu`` pins this process to one GPU first; ``stop``, once set, ends the worker after the
    current epoch of its running trial (which is queued again). ``expected_sha256``: refuse to
    run unless the study's stored space source has this hash (``expected_from`` names its file).
    ``restart_when_stuck``: when a trial overruns its timeout where no signal stops it, fail it
    and start this process afresh (``exec``: command-line workers only).
    """
    pin_this_process(gpu)
    handle = open_study_handle(storage_url, study_name, heartbeat=True)
    check_space_source(handle.record, expected_sha256, expected_from)
    config = handle.config
    report = WorkerReport()
    notes = [] if expected_sha256 else [local_space_note(handle.record)]
    restarted_after = os.environ.pop(RESTARTED_ENV, None)
    if restarted_after is not None:
        notes.append(f"this worker restarted: trial {restarted_after} did not stop after its "
                     "timeout and was failed")
    for note in filter(None, notes):
        report.notes.append(note)
        if on_note is not None:
            on_note(note)
    space = space_from_source(handle.record.space_source, handle.record.space_path)
    dataset = data_module.load(config.data, config.seed)
    if slot is None:
        slot = os.getpid()
    stop = stop or threading.Event()
    sampler = make_sampler(config.sampler, worker_seed(config.seed, slot),
                           space_hyperparameters(config), config.fixed)
    study = storage.retrying(lambda: optuna.load_study(
        study_name=study_name, storage=handle.storage, sampler=sampler,
        pruner=make_pruner(config.pruner, config.epochs, stop)), "load study")
    worker_id = handle.workers.register(study_name, socket.gethostname(), os.getpid(), slot,
                                        pinned_gpu())
    heartbeat = Heartbeat(handle, worker_id, lambda trial_id: _fail_stuck(
        handle, worker_id, trial_id, restart=restart_when_stuck))
    heartbeat.start()
    # Libraries, data and study are loaded for good: leave them out of the full collection that
    # every trial's clear_session() runs (hundreds of ms each with a backend loaded, otherwise).
    gc.freeze()
    final_state = worker_states.EXITED
    try:
        with _Signals(stop):
            _loop(handle, study, study_name, space, dataset, slot, worker_id, heartbeat, stop,
                  report, on_trial)
    except KeyboardInterrupt:
        report.interrupted = True
        final_state = worker_states.INTERRUPTED
        raise
    finally:
        gc.unfreeze()  # a notebook's objects are its own again
        heartbeat.stop()
        if stop.is_set():
            report.interrupted = True
            final_state = worker_states.INTERRUPTED
        try:
            handle.workers.set_state(worker_id, final_state)
        except STORE_ERRORS as exc:  # the store is gone: the row goes stale on its own
            _log.warning("worker state not recorded: %s", exc)
    return report


def _loop(handle: StudyHandle, study: optuna.Study, study_name: str, space, dataset, slot: int,
          worker_id: int, heartbeat: Heartbeat, stop: threading.Event, report: WorkerReport,
          on_trial) -> None:
    config = handle.config
    study_id = handle.storage.get_study_id_from_name(study_name)
    checkpoints = Checkpoints.of(handle.storage, study_id, config)  # best-epoch weights, top K kept
    while not stop.is_set():
        fail_stale_trials(study)
        if not handle.records.claim(study_name):
            if _others_may_need_a_retry(handle, study_id):
                handle.workers.set_state(worker_id, worker_states.WAITING)
                stop.wait(config.heartbeat_s)
                continue
            return
        trial = storage.retrying(study.ask, "ask")
        heartbeat.trial_id = trial._trial_id
        heartbeat.beat()  # Optuna only reaps trials that have a heartbeat: stamp it at once
        handle.workers.set_state(worker_id, worker_states.RUNNING, trial.number)
        frozen = handle.storage.get_trial(trial._trial_id)
        attempt = len(RetryHeartbeatStaleTrialCallback.retry_history(frozen)) + 1
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(),
                                       "slot": slot, "gpu": pinned_gpu()})
        trial.set_user_attr(ATTEMPT_ATTR, attempt)
        timeout = config.trial_timeout_s
        if timeout:
            heartbeat.stuck_after = time.monotonic() + timeout + config.grace_s
        try:
            with trial_alarm(timeout):
                outcome = run_trial(trial, space, dataset, config)
        except TrialTimeout as exc:
            outcome = TrialOutcome(TrialState.FAIL, reason=timeout_reason(exc.seconds),
                                   attrs={"fail_reason": timeout_reason(exc.seconds),
                                          TIMED_OUT_ATTR: True})
            _log.warning("trial %d %s", trial.number, outcome.reason)
        except KeyboardInterrupt:
            requeue(study, trial, handle.records, study_name)
            raise
        finally:
            heartbeat.trial_id = heartbeat.stuck_after = None
        if stop.is_set() and outcome.state == TrialState.PRUNED:
            if (outcome.attrs.get("epochs") or 0) >= config.epochs:
                # Ctrl-C came at its last epoch: it ran in full, so it is complete, not re-run
                outcome.state = TrialState.COMPLETE
            else:
                requeue(study, trial, handle.records, study_name)  # stopped by Ctrl-C, not pruned
                return
        checkpoints.keep_trial(trial, outcome)
        told = _tell(study, trial, outcome)
        checkpoints.settle(trial.number, told)
        handle.workers.set_state(worker_id, worker_states.IDLE, finished_trial=True)
        report.trials += 1
        report.complete += outcome.state == TrialState.COMPLETE
        report.pruned += outcome.state == TrialState.PRUNED
        report.failed += outcome.state == TrialState.FAIL
        if on_trial is not None and told:
            on_trial(handle.storage.get_trial(trial._trial_id))


def _fail_stuck(handle: StudyHandle, worker_id: int, trial_id: int, restart: bool) -> None:
    """From the heartbeat thread: the trial overran its timeout where no signal stopped it (native
    code). Fail it with the reason and, with ``restart``, start this worker process afresh (the
    hung thread goes with the old process image); without, the study at least goes on."""
    reason = timeout_reason(handle.config.trial_timeout_s or 0, restarted=restart)
    try:
        handle.storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        handle.storage.set_trial_user_attr(trial_id, TIMED_OUT_ATTR, True)
        handle.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        number = handle.storage.get_trial_number_from_id(trial_id)
        if restart:
            handle.workers.set_state(worker_id, worker_states.EXITED)
    except (*STORE_ERRORS, optuna.exceptions.UpdateFinishedTrialError) as exc:
        _log.warning("the stuck trial could not be marked failed: %s", exc)
        number = "?"
    if not restart:
        _log.warning("trial %s %s", number, reason)
        return
    print(f"note: trial {number} {reason}", flush=True)
    sys.stderr.flush()
    os.environ[RESTARTED_ENV] = str(number)
    os.execv(sys.executable, sys.orig_argv)


def _others_may_need_a_retry(handle: StudyHandle, study_id: int) -> bool:
    """Whether to wait instead of exiting: trials of other workers still run (one may die and be
    queued again) and the deadline, if any, is not past."""
    if handle.records.get(handle.record.study_name).past_deadline:
        return False
    running = handle.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    return bool(running)


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> bool:
    """Store the outcome; False when the trial was already failed for a stale heartbeat (this
    worker was thought dead, and a retry of the trial is queued)."""
    try:
        record(trial, outcome)
        if outcome.state == TrialState.COMPLETE:
            storage.retrying(lambda: study.tell(trial, outcome.value), "tell")
        else:
            storage.retrying(lambda: study.tell(trial, state=outcome.state), "tell")
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            _log.warning("trial %d was failed for a stale heartbeat while it ran; its retry "
                         "stands (%s)", trial.number, exc)
            return False
        raise
    return True


def requeue(study: optuna.Study, trial: optuna.Trial, records: storage.StudyRecords,
            study_name: str) -> None:
    """An interrupted trial: FAIL it as ``interrupted``, queue a WAITING copy with the same
    parameters (Optuna's retry callback, so the attempt chain is recorded alike) and give its
    budget slot back, so the copy runs on it."""
    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state.is_finished():  # failed as stale meanwhile: its retry is already queued
        return
    trial.set_user_attr(INTERRUPTED_ATTR, True)
    trial.set_user_attr("fail_reason", "interrupted by the user")
    study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=None)(study, frozen)
    records.release(study_name)


def superseded_trials(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of trials that were queued again (after a lost worker or an interruption)."""
    numbers = set()
    for t in trials:
        numbers.update(RetryHeartbeatStaleTrialCallback.retry_history(t))
    return numbers


def recount_claims(handle: StudyHandle, study_name: str) -> int:
    """Budget slots in use: every trial of the study that was started, except those queued again
    (their copy takes the slot) and interrupted ones (a WAITING trial, such as the baseline or a
    retry, takes its slot when a worker claims it)."""
    trials = handle.storage.get_all_trials(
        handle.storage.get_study_id_from_name(study_name), deepcopy=False)
    again = superseded_trials(trials)
    return sum(1 for t in trials
               if t.state != TrialState.WAITING and t.number not in again
               and not t.user_attrs.get(INTERRUPTED_ATTR))
