"""Local worker processes: one per slot (a GPU, or a CPU slot), followed until the budget is spent.

Each worker is a separate process (``python -m search.execution.pool``, this module's own entry
point): it pins its own GPU (or a CPU slot), loads data once, and trains in its own Keras
session. ``search start`` and ``search worker`` with several slots run the same pool.

While its workers run, the pool reaps stale trials (``optuna.storages.fail_stale_trials``) so
that a dead worker's trial is retried even when no other worker asks for a trial. Ctrl-C stops
the local workers after their current epoch; their trials are queued again (see
``search.execution.worker``). A second Ctrl-C stops them at once, the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
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
from search.execution.faults import fail_stale_trials, work_on
from search.storage import url_of
from search.study import StoredStudy, StudySnapshot, snapshot

POLL_SECONDS = 1.0
PROGRESS_READ_SHARE = 20  # wait 20x a progress read's time before the next one (<= 5% of a core)
# After Ctrl-C: how long the workers get to finish their current epoch, then to queue their
# trial again after SIGTERM, before they are killed (a killed worker's trial is retried after the
# heartbeat grace period instead).
INTERRUPT_GRACE_SECONDS = 30.0
TERMINATE_GRACE_SECONDS = 10.0

_log = logging.getLogger("search.pool")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``): stop the local workers at once, as a second Ctrl-C."""


def worker_command(study: str, slot: int, space_sha256: str | None = None,
                   config_sha256: str | None = None) -> list[str]:
    """The command line of one pool worker process."""
    command = [sys.executable, "-m", "search.execution.pool", "--study", study, "--slot", str(slot)]
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


@dataclass
class LocalWorker:
    slot: int
    gpu: str | None
    proc: subprocess.Popen
    log_path: str


def _spawn_workers(study_name: str, storage_url: str, slots: list[str | None],
                   log_dir: str, space_sha256: str | None = None,
                   config_sha256: str | None = None) -> list[LocalWorker]:
    """One process per slot, pinned to its GPU, in a session of its own: a Ctrl-C in the terminal
    reaches the pool only, which then stops its workers in order."""
    workers = []
    for slot, gpu in enumerate(slots):
        env = worker_env(gpu)
        env["SEARCH_STORAGE"] = storage_url
        log_path = os.path.join(log_dir, f"worker-{slot}.log")
        with open(log_path, "w") as log:
            try:
                proc = subprocess.Popen(worker_command(study_name, slot, space_sha256, config_sha256),
                                        env=env,
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                stop_workers(workers, now=True)
                raise SearchError(f"cannot start worker {slot + 1} of {len(slots)}: "
                                  f"{exc.strerror or exc}") from None
        workers.append(LocalWorker(slot, gpu, proc, log_path))
    return workers


def _last_line(path: str) -> str:
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _signal_all(workers: list[LocalWorker], sig: int) -> None:
    for w in workers:
        if w.proc.poll() is None:
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
    :class:`Terminated`) is raised once they are gone."""
    reaper = work_on(stored)
    log_dir = tempfile.mkdtemp(prefix=f"search-{stored.name}-workers-")
    with _terminate_as_interrupt():
        workers = _spawn_workers(stored.name, url_of(stored.storage), slots, log_dir, space_sha256,
                                 stored.record.config_sha256)
        if on_started is not None:
            on_started(workers)
        next_reap = next_progress = 0.0
        try:
            while any(w.proc.poll() is None for w in workers):
                if time.monotonic() >= next_reap:
                    fail_stale_trials(reaper.study)
                    next_reap = time.monotonic() + stored.config.heartbeat
                if on_progress is not None and time.monotonic() >= next_progress:
                    read_from = time.monotonic()
                    on_progress(snapshot(stored))
                    # A large study takes a while to read: keep the progress line to a small share
                    # of a core, the workers on this machine need it.
                    next_progress = time.monotonic() + PROGRESS_READ_SHARE * (time.monotonic() - read_from)
                time.sleep(POLL_SECONDS)
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
    final = snapshot(stored)
    if on_progress is not None:
        on_progress(final)
    failures = [w for w in workers if w.proc.returncode]
    if failures and not final.done:
        first = failures[0]
        raise SearchError(f"{len(failures)} of {len(workers)} workers exited with an error "
                          f"({_exit_text(first.proc.returncode)}): "
                          f"{_last_line(first.log_path) or 'no output'} (logs in {log_dir})")
    if not failures:
        shutil.rmtree(log_dir, ignore_errors=True)
    return final, workers


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


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit {code}"


def lost_workers(workers: list[LocalWorker]) -> list[str]:
    """One line per local worker that did not exit cleanly."""
    return [f"worker {w.slot} (pid {w.proc.pid}) {_exit_text(w.proc.returncode)}; "
            f"log {w.log_path}" for w in workers if w.proc.returncode]


def pool_report(final: StudySnapshot, workers: list[LocalWorker], notes: list[str]) -> WorkerReport:
    """What the pool's workers ran, from the final snapshot (trials re-run elsewhere left out)."""
    pids = {w.proc.pid for w in workers}
    mine = [t for t in final.trials if trial_attrs.worker_pid(t) in pids
            and t.state.is_finished() and not trial_attrs.interrupted(t)]
    states = Counter(t.state.name for t in mine)
    return WorkerReport(trials=len(mine), complete=states["COMPLETE"], pruned=states["PRUNED"],
                        failed=states["FAIL"], notes=list(notes))


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
    args = parser.parse_args(argv)
    configure_logging()
    try:
        report = run_worker(None, args.study, slot=args.slot,
                            pins=Pins(space_sha256=args.space_sha256, config_sha256=args.config_sha256),
                            restart_when_stuck=True)
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
