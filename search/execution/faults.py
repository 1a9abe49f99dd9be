"""Faults a worker survives: lost workers (heartbeats), hung trials (timeouts), signals (Ctrl-C).

- Heartbeats (Optuna's RDB heartbeat, which ``study.optimize`` would run; workers use ask/tell, so
  a thread of ours runs it, :class:`Heartbeat`): while a trial runs, it stamps the trial every
  ``heartbeat`` seconds, and the worker's row in the workers table with it. Before each claim
  every worker, and the pool's poll loop, call :func:`fail_stale_trials`: a RUNNING trial whose
  stamp is older than ``grace`` (its worker died) becomes FAIL, and :class:`StaleTrialRetry`
  (Optuna's ``RetryHeartbeatStaleTrialCallback``) queues a WAITING copy with the same
  parameters, at most ``max_retry`` times per trial, and gives its budget slot back.
- A trial that hangs (``--trial-timeout``): :func:`trial_alarm` (SIGALRM) stops it after the
  timeout wherever Python runs. A trial stuck where no signal reaches it (native code) is failed
  by the heartbeat thread after the timeout plus the grace period (:func:`fail_stuck_trial`),
  and a command-line worker then starts afresh in the same process (``exec``).
- :class:`StopSignals`: SIGINT stops the worker after the current epoch, a second SIGINT or a
  SIGTERM at once.
- A pool worker that dies in a trial (any exit: ``os._exit``, ``sys.exit()``, a signal, a
  segfault, the kernel's out-of-memory killer): its pool sees the exit at once and fails the
  trial with how the worker died and in which step (:class:`PhaseFile`, :func:`death_reason`,
  :func:`fail_dead_trial`); the trial is retried by the same rule as a lost heartbeat, and the
  pool starts a new worker in the slot (``search.execution.pool``).
- :func:`watch_pool`: a pool's worker whose pool died (``kill -9`` of ``search start``) learns it
  through a pidfd of its parent; it finishes its running trial and exits.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import optuna
import sqlalchemy.exc
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from search import trial_attrs
from search.storage import StudyRecords, enable_heartbeat, retrying
from search.storage import workers as worker_states
from search.study import StoredStudy, open_study

STORE_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
# Set in the environment of a worker that restarted itself after a trial it could not stop.
RESTARTED_ENV = "SEARCH_WORKER_RESTARTED_AFTER"

_log = logging.getLogger("search.worker")

# Optuna warns that its heartbeat is meant for study.optimize(); running it beside ask/tell is
# exactly what this module does, on purpose.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class StaleTrialRetry:
    """Optuna's ``RetryHeartbeatStaleTrialCallback`` that also gives the dead trial's budget slot
    back when it queues the retry (the retry takes a slot when a worker claims it)."""

    def __init__(self, max_retry: int, records: StudyRecords, checkpoints=None):
        self.max_retry = max_retry
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.records = records
        self.checkpoints = checkpoints  # the study's Checkpoints: what the dead trial left goes

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                 why: str = "lost its worker (no heartbeat)") -> bool:
        """Queue the retry; True when it was queued (False: its retries are spent)."""
        retried = len(trial_attrs.retry_history(trial)) < self.max_retry
        self.retry(study, trial_attrs.for_a_retry(trial))
        if self.checkpoints is not None:
            self.checkpoints.discard(trial)
        if retried:
            self.records.release(study.study_name)
        _log.warning("trial %d %s: %s", trial.number, why,
                     "queued again" if retried else f"not retried ({self.max_retry} retries spent)")
        return retried


def work_on(stored: StoredStudy) -> StoredStudy:
    """``stored`` set up as a process that runs or reaps trials needs it: its store with the
    study's heartbeat settings and the retry of trials whose worker died."""
    enable_heartbeat(stored.storage, stored.config.heartbeat, stored.config.grace,
                     StaleTrialRetry(stored.config.max_retry, stored.records, _checkpoints(stored)))
    return stored


def _checkpoints(stored: StoredStudy):
    """The study's checkpoints (the top-K weights), as its workers keep them."""
    from search.execution.checkpoints import Checkpoints

    return Checkpoints.of(stored.storage, stored.study_id, stored.config)


def open_for_work(storage_url: str | None, study_name: str) -> StoredStudy:
    """The study opened to run or reap its trials (:func:`work_on`)."""
    return work_on(open_study(storage_url, study_name))


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's reaper: fail RUNNING trials whose heartbeat is older than the grace period, and
    hand each to the storage's retry callback."""
    retrying(lambda: optuna.storages.fail_stale_trials(study), "fail stale trials")


# The steps of a worker's trial outside the runner's own (``runner.BUILD``, ``FIT``, ``SCORING``).
SETUP, STORING, IDLE = "its setup", "storing its result", "idle"
_PHASE_WIDTH = 120


class PhaseFile:
    """Where a pool worker says which trial it runs and in which step: one line of a small file
    in its pool's log folder, rewritten in place (a write to the page cache, no store round
    trip, so free per step; it survives the process). The pool reads it once the worker died
    (:meth:`read`); without a path (a worker not started by a pool), nothing is written."""

    def __init__(self, path: str | None):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if path else None
        self.set(None, None, IDLE)

    def set(self, trial_id: int | None, number: int | None, phase: str) -> None:
        if self.fd is not None:
            line = f"{'-' if trial_id is None else trial_id} {'-' if number is None else number} {phase}"
            os.pwrite(self.fd, line[:_PHASE_WIDTH].ljust(_PHASE_WIDTH).encode() + b"\n", 0)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @staticmethod
    def read(path: str) -> tuple[int, int, str] | None:
        """(trial id, trial number, step) of the trial the worker was running; None when it ran
        none (or wrote nothing yet)."""
        try:
            with open(path) as f:
                trial_id, number, phase = f.readline().strip().split(" ", 2)
        except (OSError, ValueError):
            return None
        if trial_id == "-":
            return None
        return int(trial_id), int(number), phase


def exit_text(code: int) -> str:
    """How a process ended, from its exit status (a negative status: the signal that killed it)."""
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"killed by signal {-code}"
    if -code == signal.SIGKILL:  # nobody else sends it unasked: the kernel, when memory runs out
        return "killed by SIGKILL (by the kernel: out of memory? or a kill -9)"
    return f"killed by {name}"


def death_reason(code: int, phase: str, cause: str | None = None) -> str:
    """A trial's fail reason when its worker process died in it: how, in which step, and the
    cause the worker's log names (``pool.crash_cause``)."""
    reason = f"worker {exit_text(code)} during {phase}"
    return f"{reason}: {cause}" if cause else reason


def fail_dead_trial(stored: StoredStudy, trial_id: int, reason: str) -> bool | None:
    """The trial (id) whose worker died: FAIL with ``reason`` and queued again by the study's
    retry rule (:class:`StaleTrialRetry`, as a lost heartbeat). Returns whether a retry was
    queued; None when the trial had finished already (its result stored, or reaped as stale)."""
    storage = stored.storage
    try:
        # as it ran: its retry copies its user attributes, and must not inherit the reason
        frozen = retrying(lambda: storage.get_trial(trial_id), "read trial")
        if frozen.state != TrialState.RUNNING:
            return None
        retrying(lambda: storage.set_trial_user_attr(trial_id, trial_attrs.FAIL_REASON, reason),
                 "fail trial")
        if not retrying(lambda: storage.set_trial_state_values(trial_id, TrialState.FAIL), "fail trial"):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    study = optuna.load_study(study_name=stored.name, storage=storage)
    retried = StaleTrialRetry(stored.config.max_retry, stored.records,
                              _checkpoints(stored))(study, frozen, f"failed: {reason}")
    if not retried:  # a failure that stays: it may be the one too many in a row
        stop = failed_in_a_row_reason(stored, storage.get_trial(trial_id))
        if stop:
            stored.records.stop(stored.name, stop)
            _log.warning("study %r stopped: %s", stored.name, stop)
    return retried


def failed_in_a_row_reason(stored: StoredStudy, trial: optuna.trial.FrozenTrial) -> str | None:
    """Why the study stops after this failed trial, when it is the ``max_consecutive_failures``-th
    failed trial in a row (Keras Tuner's ``max_consecutive_failed_trials``); else None."""
    limit = stored.config.max_consecutive_failures
    if not limit:
        return None
    run = trial_attrs.failed_in_a_row(stored.storage.get_all_trials(stored.study_id, deepcopy=False))
    if len(run) < limit:
        return None
    return (f"{len(run)} trials failed in a row (--max-consecutive-failures {limit}, Keras Tuner's "
            f"max_consecutive_failed_trials); the last, trial {trial.number}: "
            f"{trial_attrs.fail_reason(trial)}")


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


# How often the heartbeat looks whether the worker's loop gave the pooled connection back.
TAKE_TURNS_POLL_S = 0.05


class Heartbeat:
    """The worker's heartbeat thread: stamps the running trial (Optuna) and the worker's row,
    and calls ``on_stuck(trial_id)`` once a trial runs past ``stuck_after`` (a monotonic time).

    It takes turns with the worker's loop on the process's one pooled connection
    (``search.storage.engine.POOL_SIZE``): while the loop holds it, a beat waits (up to half the
    heartbeat interval, then it beats anyway on a connection of its own), so a worker keeps one
    server connection instead of two."""

    def __init__(self, stored: StoredStudy, worker_id: int,
                 on_stuck: Callable[[int], None] | None = None):
        self.stored = stored
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
        self._thread.join(timeout=self.stored.config.heartbeat + 5)

    def beat(self) -> None:
        trial_id = self.trial_id
        if trial_id is not None:
            self.stored.storage.record_heartbeat(trial_id)
        self.stored.workers.beat(self.worker_id)

    def _wait_for_the_connection(self) -> None:
        checked_out = getattr(getattr(self.stored.storage.engine, "pool", None), "checkedout", None)
        if checked_out is None:
            return
        deadline = time.monotonic() + self.stored.config.heartbeat / 2
        while checked_out() > 0 and time.monotonic() < deadline:
            if self._done.wait(TAKE_TURNS_POLL_S):
                return

    def _run(self) -> None:
        while not self._done.wait(self.stored.config.heartbeat):
            self._wait_for_the_connection()
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


def fail_stuck_trial(stored: StoredStudy, worker_id: int, trial_id: int, restart: bool) -> None:
    """From the heartbeat thread: the trial overran its timeout where no signal stopped it (native
    code). Fail it with the reason and, with ``restart``, start this worker process afresh (the
    hung thread goes with the old process image); without, the study at least goes on."""
    reason = timeout_reason(stored.config.trial_timeout or 0, restarted=restart)
    try:
        stored.storage.set_trial_user_attr(trial_id, trial_attrs.FAIL_REASON, reason)
        stored.storage.set_trial_user_attr(trial_id, trial_attrs.TIMED_OUT, True)
        stored.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        number = stored.storage.get_trial_number_from_id(trial_id)
        if restart:
            stored.workers.set_state(worker_id, worker_states.EXITED)
    except (*STORE_ERRORS, optuna.exceptions.UpdateFinishedTrialError) as exc:
        _log.warning("the stuck trial could not be marked failed: %s", exc)
        number = "?"
    if not restart:
        _log.warning("trial %s %s", number, reason)
        return
    _log.warning("note: trial %s %s", number, reason)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.environ[RESTARTED_ENV] = str(number)
    os.execv(sys.executable, sys.orig_argv)


class StopSignals:
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


def watch_pool(pid: int, gone: threading.Event) -> None:
    """Set ``gone`` once process ``pid`` (this worker's pool, its parent) has exited: a pidfd that
    becomes readable when it does (Linux 5.3+), else its parent id polled every second."""

    def run():
        try:
            if os.getppid() != pid:
                raise ProcessLookupError(pid)  # gone before the watch began
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass
        except (AttributeError, OSError):  # no pidfd here
            while os.getppid() == pid:
                time.sleep(1.0)
        else:
            try:
                select.select([fd], [], [])
            finally:
                os.close(fd)
        _log.warning("the pool that started this worker (pid %d) is gone: this worker finishes "
                     "its running trial and exits", pid)
        gone.set()

    threading.Thread(target=run, name="search-pool-watch", daemon=True).start()
