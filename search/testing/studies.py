"""A study's store read while a test runs it: its trials (:func:`trials_of`, :func:`completed`),
its workers' rows (:func:`worker_rows`), retries (:func:`retry_history`), the SQLite file's
integrity, and :func:`wait_for` (:func:`wait_for_trials`), which polls a predicate over them
until an event happened."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search import storage

# Heartbeat every second, a trial is taken for dead after 4 s without one.
FAST_FAULTS = ["--heartbeat", "1", "--grace", "4"]
# Every wait's timeout is a failsafe, times this factor: a loaded machine (a worker importing
# TensorFlow beside other builds took 3x longer than the timeouts were sized for) is slow, not wrong.
WAIT_FACTOR = float(os.environ.get("SEARCH_TEST_WAIT_FACTOR", "3"))


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None,
             interval: float = 0.3):
    """Poll ``predicate()`` every ``interval`` seconds until it returns something truthy, and
    return that; fail the test after ``timeout`` seconds, or as soon as ``proc`` (the command that
    should make it happen) ended."""
    import pytest

    deadline = time.monotonic() + timeout * WAIT_FACTOR
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended before {what}: {out[-2000:]} {err[-2000:]}")
        time.sleep(interval)
    if proc is not None:
        proc.kill()
    pytest.fail(f"timed out waiting for {what} ({timeout * WAIT_FACTOR:.0f} s)")


def wait_for_trials(url: str, predicate, timeout: float, what: str,
                    proc: subprocess.Popen | None = None, name: str = "tiny"):
    """:func:`wait_for` ``predicate(trials)`` over the study's trials, read ten times a second
    through one connection that stays open (a read then costs milliseconds, not a new engine):
    a state of the trials that lasts a fraction of a second, such as a trial's first epochs on a
    fast machine, is seen while it lasts."""
    opened = {}

    def read():
        if "study" not in opened:
            if not trials_of(url, name):  # the study exists (and its store: none is created here)
                return None
            opened["storage"] = optuna.storages.RDBStorage(url)
            opened["study"] = optuna.load_study(study_name=name, storage=opened["storage"])
        return predicate(opened["study"].get_trials(deepcopy=False))

    try:
        return wait_for(read, timeout, what, proc, interval=0.1)
    finally:
        if "storage" in opened:
            opened["storage"].engine.dispose()


def trials_of(url: str, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    """The study's trials as Optuna reads them; none while the study does not exist yet."""
    try:
        return optuna.load_study(study_name=name, storage=url).trials
    except KeyError:
        return []


def worker_rows(url: str, name: str = "tiny") -> list[storage.WorkerRow]:
    """The study's rows in the workers table."""
    store = storage.open_storage(url)
    try:
        return storage.WorkerRegistry(store.engine).list(name)
    finally:
        store.engine.dispose()


def retry_history(t) -> list[int]:
    """The numbers of the trials ``t`` re-runs (Optuna's retry of a failed or interrupted trial)."""
    return t.system_attrs.get("retry_history", [])


def completed(url: str, name: str = "tiny") -> dict[int, tuple]:
    """Completed trials: number -> (value, params, history)."""
    return {t.number: (t.value, t.params, t.user_attrs.get("history"))
            for t in trials_of(url, name) if t.state == TrialState.COMPLETE}


def integrity(path: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` of the store file: ``"ok"`` when it is whole."""
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still runs (a zombie, exited and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def pool_workers_under(tmpdir: str) -> list[int]:
    """Live pool worker processes (``python -m search.execution.pool``) whose TMPDIR is
    ``tmpdir``: those a test's commands started, when the test gave them that folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"search.execution.pool" not in (proc / "cmdline").read_bytes():
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if f"TMPDIR={tmpdir}".encode() in environ and pid_alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


def worker_log_folders(tmpdir: str) -> list[str]:
    """The pools' worker log folders (``search-*-workers-*``) in ``tmpdir``."""
    return sorted(p.name for p in Path(tmpdir).glob("search-*-workers-*"))


def running_worker_after_a_completed_trial(url: str, epochs: int | None = None,
                                           trials: list | None = None):
    """A live worker in the middle of a trial, once a trial has completed: one epoch reported
    (``epochs`` given: at least half of them, and three, still to come, so a busy machine cannot
    finish the trial between this read and a kill); of several, the one whose trial has the fewest
    epochs reported. ``trials``: the study's trials just read (read here if not given)."""
    trials = trials_of(url) if trials is None else trials
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return None
    # epochs reported, more to come: the trial is surely still running when the kill lands
    last = 1 if epochs is None else epochs - max(3, epochs // 2)
    reported = {t.number: len(t.intermediate_values) for t in trials
                if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= last}
    if not reported:
        return None
    rows = [row for row in worker_rows(url) if row.state == "running" and row.trial_number in reported]
    return min(rows, key=lambda row: reported[row.trial_number], default=None)


def new_subset_study(root: Path, trials: int, **options) -> str:
    """:data:`~search.testing.spaces.SUBSET_SPACE` written to ``root/space.py`` and its study
    ``space`` created in ``root/store.db`` as ``search start`` creates it (one epoch a trial, no
    pruner, no trial run): the store's URL. ``options``: more start options."""
    from search.commands.start import prepare
    from search.options import start_options
    from search.testing.spaces import SUBSET_SPACE

    space = root / "space.py"
    space.write_text(SUBSET_SPACE)
    url = f"sqlite:///{root / 'store.db'}"
    prepare(start_options(str(space), storage=url, trials=trials, epochs=1,
                         pruner="none", **options))
    return url
