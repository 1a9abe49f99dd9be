"""Local worker processes: one per slot (a GPU, or a CPU slot), followed until the budget is spent.

Each worker is a separate process (``python -m search.execution.pool``, this module's own entry
point): it pins its own GPU (or a CPU slot), loads data once, and trains in its own Keras
session. ``search start`` and ``search worker`` with several slots run the same pool.

While its workers run, the pool reaps stale trials (``optuna.storages.fail_stale_trials``) so
that a dead worker's trial is retried even when no other worker asks for a trial. Ctrl-C stops
the local workers after their current epoch; their trials are queued again (see
``search.execution.worker``). A second Ctrl-C stops them at once, the same way.

No worker outlives its pool unsupervised: the pool stops every worker it started on every way
out (a failed start of one of them, an error, an interrupt), each worker's process group with it;
a worker whose pool died (``kill -9``) sees it through a pidfd, finishes its running trial and
exits. The workers' log folder (``search-<study>-workers-*`` in the temporary folder) is removed
on every way out, after the reason a worker died is read from its log: the pool's, or the last
worker's when the pool died.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from search import trial_attrs
from search.errors import SearchError
from search.execution.devices import worker_env
from search.execution.faults import (
    STORE_ERRORS,
    PhaseFile,
    death_reason,
    exit_text,
    fail_dead_trial,
    fail_stale_trials,
    work_on,
)
from search.logs import UNSCALED
from search.options import study_file_name
from search.storage import free_connections, url_of, waiting_for_writable
from search.storage import workers as worker_states
from search.storage.retry import UNWRITABLE, WRITABLE_AGAIN
from search.study import StoredStudy, StudySnapshot, snapshot

POLL_SECONDS = 1.0
PROGRESS_READ_SHARE = 20  # wait 20x a progress read's time before the next one (<= 5% of a core)
# After Ctrl-C: how long the workers get to finish their current epoch, then to queue their
# trial again after SIGTERM, before they are killed (a killed worker's trial is retried after the
# heartbeat grace period instead).
INTERRUPT_GRACE_SECONDS = 30.0
TERMINATE_GRACE_SECONDS = 10.0
CONNECTIONS_PER_WORKER = 2  # its pool and its heartbeat (bench/store_scaling.py)

_log = logging.getLogger("search.pool")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``): stop the local workers at once, as a second Ctrl-C."""


def worker_command(study: str, slot: int, space_sha256: str | None = None,
                   config_sha256: str | None = None, log_path: str | None = None) -> list[str]:
    """The command line of one pool worker process (its pool is its parent process)."""
    command = [sys.executable, "-X", "faulthandler", "-m", "search.execution.pool",
               "--study", study, "--slot", str(slot), "--pool-pid", str(os.getpid())]
    if log_path:  # removed by the worker when its pool died and cannot; its phase file beside it
        command += ["--log", log_path, "--phase-file", phase_path(log_path)]
    if space_sha256:  # the worker refuses to run a stored source that differs from this one
        command += ["--space-sha256", space_sha256]
    if config_sha256:  # and a configuration that differs from the one its coordinator checked
        command += ["--config-sha256", config_sha256]
    return command


@dataclass
class WorkerReport:
    """What a worker (or a pool of them) ran."""

    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    pool_gone: bool = False  # a pool's worker whose pool died: it finished its trial and left


@dataclass
class LocalWorker:
    slot: int
    gpu: str | None
    proc: subprocess.Popen
    log_path: str
    reason: str | None = None  # why it exited with an error, read from its log before it goes
    died_in: str | None = None  # the trial it died in and what became of it (``_on_death``)
    seen: bool = False  # its exit was handled


def phase_path(log_path: str) -> str:
    """A pool worker's phase file (``faults.PhaseFile``), beside its log."""
    return os.path.splitext(log_path)[0] + ".phase"


def log_folder_prefix(study_name: str) -> str:
    """``search-<study>-workers-``, the study's name made a short file name."""
    return f"search-{study_file_name(study_name, 40)}-workers-"


@dataclass
class _Spawner:
    """Starts the pool's worker processes: each pinned to its slot's GPU, in a session (and
    process group) of its own (a Ctrl-C in the terminal reaches the pool only, which then stops
    its workers in order), with its own log (and phase file) in the pool's log folder."""

    study_name: str
    storage_url: str
    log_dir: str
    space_sha256: str | None = None
    config_sha256: str | None = None
    started: int = 0

    def start(self, slot: int, gpu: str | None) -> LocalWorker:
        """One worker process (``OSError`` when it cannot be started)."""
        env = worker_env(gpu)
        env["SEARCH_STORAGE"] = self.storage_url
        log_path = os.path.join(self.log_dir, f"worker-{slot}-{self.started}.log")
        self.started += 1
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                worker_command(self.study_name, slot, self.space_sha256, self.config_sha256, log_path),
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return LocalWorker(slot, gpu, proc, log_path)


def _spawn_workers(spawner: _Spawner, slots: list[str | None]) -> list[LocalWorker]:
    """One process per slot. If one cannot be started, those started are stopped at once."""
    workers = []
    try:
        for slot, gpu in enumerate(slots):
            try:
                workers.append(spawner.start(slot, gpu))
            except OSError as exc:
                raise SearchError(f"cannot start worker {slot + 1} of {len(slots)}: "
                                  f"{exc.strerror or exc}; the {len(workers)} started were "
                                  "stopped") from None
    except BaseException:
        stop_workers(workers, now=True)  # a trial one of them took already is queued again
        raise
    return workers


# Lines a worker's log holds that say nothing about why it died: the backends' start-up chatter
# (TensorFlow's C++ log lines, absl's, CUDA's "could not find drivers" where there is no GPU).
_NOISE = re.compile(r"^(?:[IWEF]\d{4} |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |WARNING: All log messages "
                    r"before absl|.*(?:cuda|cuDNN|cuFFT|cuBLAS|TF-TRT|oneDNN|rebuild TensorFlow|"
                    r"computation placer|tensorflow/core/|To enable the following instructions))",
                    re.IGNORECASE)


def _library_folders() -> tuple[str, ...]:
    """Where the interpreter's own code lives (the standard library, installed packages)."""
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[key]) + os.sep for key in ("stdlib", "purelib", "platlib"))


def crash_cause(path: str) -> str | None:
    """Why a worker died, from its log: Python's fatal-error report (faulthandler: the error and
    the innermost frame of the crashing thread outside the libraries, e.g. ``Fatal Python error:
    Segmentation fault in fit (space.py, line 12)``), else its last line that is not the
    backends' chatter; None when it wrote nothing else."""
    try:
        lines = [line.rstrip() for line in Path(path).read_text(errors="replace").splitlines()]
    except OSError:
        return None
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error:")]
    if fatal:
        error = lines[fatal[-1]].strip()
        after = lines[fatal[-1] + 1:]
        current = next((i for i, line in enumerate(after) if line.startswith("Current thread")), -1)
        frames = []
        for line in after[current + 1:]:
            frame = re.match(r'\s+File "(.+)", line (\d+) in (.+)', line)
            if frame is None:
                if frames:
                    break
                continue
            frames.append(frame.groups())
        libraries = _library_folders()
        ours = [f for f in frames if not os.path.realpath(f[0]).startswith(libraries)]
        if ours or frames:
            where, number, function = (ours or frames)[0]
            return f"{error} in {function} ({os.path.basename(where)}, line {number})"
        return error
    meaningful = [line.strip() for line in lines if line.strip() and not _NOISE.match(line.strip())
                  and UNSCALED not in line]  # our own note, not a cause
    return meaningful[-1] if meaningful else None


def _signal_all(workers: list[LocalWorker], sig: int) -> None:
    """Send ``sig`` to every live worker's process group (what a worker started goes with it)."""
    for w in workers:
        if w.proc.poll() is None:
            try:
                os.killpg(w.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                w.proc.send_signal(sig)


def _wait_all(workers: list[LocalWorker], seconds: float) -> bool:
    """Wait up to ``seconds`` for every worker to exit; True when they all did."""
    deadline = time.monotonic() + seconds
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    return True


def stop_workers(workers: list[LocalWorker], grace: float = INTERRUPT_GRACE_SECONDS,
                 now: bool = False) -> None:
    """Stop the local workers: SIGINT (finish the current epoch, queue the trial again), then
    SIGTERM (queue it again at once), then SIGKILL (its heartbeat goes stale, it is retried)."""
    if not now:
        _signal_all(workers, signal.SIGINT)
        if _wait_all(workers, grace):
            return
    _signal_all(workers, signal.SIGTERM)
    if _wait_all(workers, TERMINATE_GRACE_SECONDS):
        return
    _signal_all(workers, signal.SIGKILL)
    _wait_all(workers, TERMINATE_GRACE_SECONDS)


def run_local_workers(stored: StoredStudy, slots: list[str | None],
                      on_progress: Callable[[StudySnapshot], None] | None = None,
                      on_started: Callable[[list[LocalWorker]], None] | None = None,
                      space_sha256: str | None = None,
                      ) -> tuple[StudySnapshot, list[LocalWorker]]:
    """Run one worker process per slot until they exit (the budget is spent); reap stale trials
    meanwhile. Returns the final snapshot and the workers.

    ``space_sha256``: the workers refuse to run the study's stored source unless it has this hash,
    and every worker refuses a configuration other than the one this coordinator holds.
    Ctrl-C stops the workers after their current epoch, a second Ctrl-C or a SIGTERM at once;
    either way their trials are queued again and :class:`KeyboardInterrupt` (or
    :class:`Terminated`) is raised once they are gone. However this returns or raises, no worker
    it started is left running and its log folder is gone."""
    reaper = work_on(stored)
    check_store_room(stored, len(slots))
    log_dir = tempfile.mkdtemp(prefix=log_folder_prefix(stored.name))
    workers: list[LocalWorker] = []
    try:
        with _terminate_as_interrupt(), waiting_for_writable():
            spawner = _Spawner(stored.name, url_of(stored.storage), log_dir, space_sha256,
                               stored.record.config_sha256)
            workers = _spawn_workers(spawner, slots)
            if on_started is not None:
                on_started(workers)
            _follow(stored, reaper, workers, on_progress, spawner)
        final = snapshot(stored)
        if on_progress is not None:
            on_progress(final)
        failures = [w for w in workers if w.proc.returncode]
        if failures and not final.done:
            raise SearchError(f"{len(failures)} of {len(workers)} workers exited with an error; "
                              f"the first: {failures[0].reason}")
        return final, workers
    finally:
        if any(w.proc.poll() is None for w in workers):  # an error of the pool's own: stop them now
            stop_workers(workers, now=True)
        shutil.rmtree(log_dir, ignore_errors=True)


def _follow(stored: StoredStudy, reaper: StoredStudy, workers: list[LocalWorker],
            on_progress: Callable[[StudySnapshot], None] | None, spawner: _Spawner) -> None:
    """Until every worker exited: reap stale trials, show progress, fail the trial of a worker
    that died in it at once and start another worker in its slot (``workers`` grows by it); stop
    them all on Ctrl-C."""
    next_reap = next_progress = 0.0
    store_waits = _StoreWaits()
    try:
        while True:
            for w in [w for w in workers if not w.seen and w.proc.poll() is not None]:
                if _on_death(stored, w) and _wants_workers(stored):
                    try:
                        workers.append(spawner.start(w.slot, w.gpu))
                    except OSError as exc:
                        _log.warning("no new worker for slot %d: %s", w.slot, exc.strerror or exc)
            if all(w.proc.poll() is not None for w in workers):
                store_waits.relay(workers)  # what they said since the last read: their logs go next
                break
            if time.monotonic() >= next_reap:
                store_waits.relay(workers)
                fail_stale_trials(reaper.study)
                next_reap = time.monotonic() + stored.config.heartbeat
            if on_progress is not None and time.monotonic() >= next_progress:
                read_from = time.monotonic()
                on_progress(snapshot(stored))
                # A large study takes a while to read: keep the progress line to a small share
                # of a core, the workers on this machine need it.
                next_progress = time.monotonic() + PROGRESS_READ_SHARE * (time.monotonic() - read_from)
            _wait_any(workers, POLL_SECONDS)
    except KeyboardInterrupt as first:
        try:
            stop_workers(workers, now=isinstance(first, Terminated))
        except KeyboardInterrupt as second:  # a second Ctrl-C or a SIGTERM: stop now
            try:
                stop_workers(workers, now=True)
            except KeyboardInterrupt:  # and a third: SIGKILL (their trials are reaped later)
                _signal_all(workers, signal.SIGKILL)
            raise second from None
        raise
    finally:
        for w in workers:  # however the pool stops, no trial of a dead worker stays RUNNING
            if not w.seen and w.proc.poll() is not None:
                _on_death(stored, w)


class _StoreWaits:
    """The workers' word that the store cannot be written, and that it can again
    (``storage.retry``), said on the coordinator's own output once per spell: the person watching
    ``search start`` is who can free the space."""

    def __init__(self):
        self.read: dict[str, int] = {}  # log path -> bytes read (whole lines)
        self.unwritable = False

    def relay(self, workers: list[LocalWorker]) -> None:
        for w in workers:
            try:
                with open(w.log_path, "rb") as f:
                    f.seek(self.read.get(w.log_path, 0))
                    new = f.read()
            except OSError:
                continue
            whole = new[:new.rfind(b"\n") + 1]
            self.read[w.log_path] = self.read.get(w.log_path, 0) + len(whole)
            for line in whole.decode(errors="replace").splitlines():
                if line.startswith(UNWRITABLE) and not self.unwritable:
                    self.unwritable = True
                    _log.warning("%s", line)
                elif line.startswith(WRITABLE_AGAIN) and self.unwritable:
                    self.unwritable = False
                    _log.warning("%s", line)


def _wait_any(workers: list[LocalWorker], seconds: float) -> None:
    """Sleep up to ``seconds``, less once one of the live workers exits (its pidfd is readable)."""
    fds = []
    try:
        for w in workers:
            if w.proc.poll() is None:
                try:
                    fds.append(os.pidfd_open(w.proc.pid))
                except (AttributeError, OSError):
                    pass
        if fds:
            select.select(fds, [], [], seconds)
        else:
            time.sleep(seconds)
    finally:
        for fd in fds:
            os.close(fd)


def _on_death(stored: StoredStudy, w: LocalWorker) -> bool:
    """A worker exited: if it was running a trial (its phase file says which, and the trial is
    still RUNNING), fail that trial with how the worker died and where, at once, and queue its
    retry by the study's rule. True when it died in a trial (a new worker may take the slot)."""
    w.seen = True
    running = PhaseFile.read(phase_path(w.log_path))
    code = w.proc.returncode
    if code:
        w.reason = _worker_reason(stored, w)
    if running is None:
        return False
    trial_id, number, phase = running
    cause = crash_cause(w.log_path) if code else None
    reason = death_reason(code, phase, cause)
    try:
        retried = fail_dead_trial(stored, trial_id, reason)
    except STORE_ERRORS as exc:  # the store is down: the trial's heartbeat goes stale instead
        _log.warning("trial %d of a dead worker not failed yet: %s", number, exc)
        return True
    if retried is None:  # it had finished (stored, or reaped as stale) before the worker died
        return True
    w.died_in = f"trial {number} failed ({reason}), {'queued again' if retried else 'not retried'}"
    try:
        _settle_worker_row(stored, w.proc.pid)
    except STORE_ERRORS:  # its row goes stale on its own
        pass
    return True


def _settle_worker_row(stored: StoredStudy, pid: int) -> None:
    """A dead worker's row in the workers table: exited (it could not say so itself)."""
    for row in stored.workers.list(stored.name):
        if row.pid == pid and row.state not in (worker_states.EXITED, worker_states.INTERRUPTED):
            stored.workers.set_state(row.worker_id, worker_states.EXITED)


def _wants_workers(stored: StoredStudy) -> bool:
    """Whether a new worker would find work: the study is not stopped and has slots left, or
    trials queued again (a retry gives its slot back)."""
    record = stored.records.get(stored.name)
    return not record.stopped and not record.past_deadline and record.claimed < record.budget


def _worker_reason(stored: StoredStudy, w: LocalWorker) -> str:
    """A worker that exited with an error: how (exit status or signal), during which trial, and
    the cause its log names, read as soon as it exited."""
    try:
        row = next((r for r in stored.workers.list(stored.name) if r.pid == w.proc.pid), None)
    except STORE_ERRORS:
        row = None
    during = f" while running trial {row.trial_number}" if row is not None and \
        row.state == worker_states.RUNNING and row.trial_number is not None else ""
    cause = crash_cause(w.log_path)
    return (f"worker {w.slot} (pid {w.proc.pid}) {exit_text(w.proc.returncode)}{during}: "
            f"{cause or 'it wrote no error'}")


def check_store_room(stored: StoredStudy, workers: int) -> None:
    """Refuse more local workers than the store has connections left for (PostgreSQL's
    ``max_connections``; about two a worker: its pool and its heartbeat)."""
    free = free_connections(stored.storage.engine)
    if free is not None and workers * CONNECTIONS_PER_WORKER > free:
        raise SearchError(f"{workers} workers need about {workers * CONNECTIONS_PER_WORKER} "
                          f"connections to the store and it has {free} left (max_connections): "
                          f"run at most {max(0, free // CONNECTIONS_PER_WORKER)} here, or raise "
                          "max_connections or put a pooler (PgBouncer) in front")


@contextmanager
def _terminate_as_interrupt():
    """While the local workers run, SIGTERM raises :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def lost_workers(workers: list[LocalWorker]) -> list[str]:
    """One line per local worker that did not exit cleanly or died in a trial (and what became
    of the trial)."""
    lines = []
    for w in workers:
        if w.proc.returncode or w.died_in:
            line = w.reason or f"worker {w.slot} (pid {w.proc.pid}) {exit_text(w.proc.returncode)}"
            lines.append(f"{line}; {w.died_in}" if w.died_in else line)
    return lines


def pool_report(final: StudySnapshot, workers: list[LocalWorker], notes: list[str]) -> WorkerReport:
    """What the pool's workers ran, from the final snapshot (trials re-run elsewhere left out)."""
    pids = {w.proc.pid for w in workers}
    mine = [t for t in final.trials if trial_attrs.worker_pid(t) in pids
            and t.state.is_finished() and not trial_attrs.interrupted(t)]
    states = Counter(t.state.name for t in mine)
    return WorkerReport(trials=len(mine), complete=states["COMPLETE"], pruned=states["PRUNED"],
                        failed=states["FAIL"], notes=list(notes))


def _remove_log(path: str) -> None:
    """A worker's own log and phase file, and their folder once it is empty (the last worker of
    a dead pool)."""
    for remove in (os.remove, lambda p: os.remove(phase_path(p)), lambda p: os.rmdir(os.path.dirname(p))):
        try:
            remove(path)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """One pool worker process: run the study's trials from the store in ``$SEARCH_STORAGE``.

    Its output goes to the pool's log file; an error is its last line (the pool reports it)."""
    from sqlalchemy.exc import SQLAlchemyError

    from search.execution.pins import Pins
    from search.execution.worker import run_worker
    from search.logs import configure_logging
    from search.storage import StoreError, store_failed

    parser = argparse.ArgumentParser(prog="python -m search.execution.pool")
    parser.add_argument("--study", required=True)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--space-sha256", default=None)
    parser.add_argument("--config-sha256", default=None)
    parser.add_argument("--pool-pid", type=int, default=None)
    parser.add_argument("--log", default=None)
    parser.add_argument("--phase-file", default=None)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        report = run_worker(None, args.study, slot=args.slot,
                            pins=Pins(space_sha256=args.space_sha256, config_sha256=args.config_sha256),
                            restart_when_stuck=True, pool_pid=args.pool_pid,
                            phase_file=args.phase_file)
        if report.pool_gone and args.log:  # no pool left to read it or to remove its folder
            _remove_log(args.log)
    except (SearchError, StoreError) as exc:
        _log.error("error: %s", exc)
        return 1
    except SQLAlchemyError as exc:
        _log.error("error: %s", store_failed(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    return 130 if report.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
