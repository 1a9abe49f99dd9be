"""Faults, each followed by a count of the trials: every completed trial is still there with its
values and history.

Covered elsewhere (not repeated here):

- SIGKILL of a worker mid-trial: tests/e2e/test_workers.py::test_sqlite_study_survives_a_killed_worker
  and tests/e2e/test_postgres.py::test_postgres_study_survives_a_killed_worker;
- the PostgreSQL server gone and back (restart, new connections refused meanwhile):
  tests/e2e/test_postgres.py::test_postgres_restart_mid_study_and_the_workers_carry_on_to_exactly_the_budget;
- a single Ctrl-C: tests/e2e/test_workers.py::test_ctrl_c_requeues_the_running_trials_and_a_resume_runs_them;
  Ctrl-C twice: tests/e2e/test_catalogue.py::test_ctrl_c_twice_stops_at_once.
- a worker that dies in a trial (os._exit, sys.exit(), a segfault, SIGKILL) and the reason its
  trial fails with: tests/e2e/test_crashes.py;
- an artifact store that fails its writes (simulated): tests/e2e/test_best.py::
  test_a_failing_artifact_store_leaves_the_trials_complete.
- a new connection to a missing store file waits for it: tests/unit/storage/test_retry.py;
  --trial-timeout stored and checked: tests/unit/test_options.py.

The faults themselves (a worker killed mid-trial, signals to the coordinator while a trial
sleeps in fit()) are in search/testing/faults.py, shared with those tests.

Here: SIGKILL of a worker in the middle of a write (its transaction open, the write lock held);
a worker stopped (SIGSTOP) past the grace period after its last epoch and continued (SIGCONT) once
its trial was retried elsewhere; SIGTERM of the coordinator; SIGKILL of the coordinator (its workers
finish their trial and exit); a worker that cannot be started (fork fails); the SQLite store's file gone for a while and back; a trial that hangs
(``--trial-timeout``), where Python runs and where no signal reaches it; checkpoints written to a
real full disk (a full tmpfs, where this machine lets the tests mount one).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import time

import pytest
from optuna.trial import TrialState

from search.testing import disks
from search.testing.cli import error_lines, popen_cli, run_cli
from search.testing.faults import assert_kept, assert_requeued_and_kept, interrupt_a_sleeping_trial
from search.testing.studies import (
    FAST_FAULTS,
    completed,
    integrity,
    pid_alive,
    pool_workers_under,
    retry_history,
    trials_of,
    wait_for,
    wait_for_trials,
    worker_log_folders,
    worker_rows,
)

pytestmark = pytest.mark.slow


def assert_exact_budget(url: str, budget: int, name: str = "tiny") -> None:
    trials = trials_of(url, name)
    superseded = {n for t in trials for n in retry_history(t)}
    counted = [t for t in trials if t.number not in superseded]
    assert len(counted) == budget
    assert all(t.state == TrialState.COMPLETE for t in counted), \
        [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in counted]


# ------------------------------------------------------------------ SIGKILL in the middle of a write

# Loaded into every Python process of the study (PYTHONPATH): the second write that completes a
# trial stops after its UPDATE, inside its transaction (SQLite's write lock held), and waits
# there to be killed. The test only observes; the product has no hook for it.
FREEZE_HOOK = textwrap.dedent('''
    import os
    import time

    FREEZE_DIR = os.environ.get("SEARCH_TEST_FREEZE_DIR")
    if FREEZE_DIR:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        @event.listens_for(Engine, "after_cursor_execute")
        def _freeze(conn, cursor, statement, parameters, context, executemany):
            if not statement.lstrip().upper().startswith("UPDATE TRIALS SET") \\
                    or "COMPLETE" not in repr(parameters):
                return
            for name in ("first", "frozen"):  # the first completion passes, the second freezes
                try:
                    fd = os.open(os.path.join(FREEZE_DIR, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                if name == "frozen":
                    time.sleep(3600)
                return
''')


def test_worker_killed_mid_write_leaves_the_store_whole(tiny_space, tmp_path):
    db = tmp_path / "store.db"
    url = f"sqlite:///{db}"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FREEZE_HOOK)
    freeze = tmp_path / "freeze"
    freeze.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "SEARCH_TEST_FREEZE_DIR": str(freeze)}
    budget = 3
    proc = popen_cli("start", str(tiny_space), "--storage", url, "--trials", str(budget),
                     "--epochs", "1", "--workers", "2", "--pruner", "none", *FAST_FAULTS, env=env)
    frozen = freeze / "frozen"
    wait_for(frozen.exists, 150, "a worker frozen inside the write that completes a trial", proc)
    # the file is created first, then the frozen worker writes its pid into it
    pid = int(wait_for(lambda: frozen.read_text().strip(), 30, "the frozen worker's pid", proc))
    before = completed(url)  # readers are not blocked by the open write (WAL)
    mid_write = [t for t in trials_of(url) if t.state == TrialState.RUNNING
                 and t.user_attrs.get("worker", {}).get("pid") == pid]
    assert len(before) == 1 and len(mid_write) == 1, (before, mid_write)
    assert "history" in mid_write[0].user_attrs  # its results were written, its state was not yet
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "killed by SIGKILL" in out
    assert integrity(db) == "ok"
    assert_kept(url, before)
    by_number = {t.number: t for t in trials_of(url)}
    killed = by_number[mid_write[0].number]
    assert killed.state == TrialState.FAIL  # the uncommitted COMPLETE was rolled back, not half-kept
    rerun = [t for t in by_number.values() if retry_history(t) == [killed.number]]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert rerun[0].params == killed.params
    assert_exact_budget(url, budget)


# ------------------------------------------------------------------ a stalled worker's late result

# Each trial trains one real epoch (its best-epoch weights are kept) and scores 0.9, 0.8, 0.7, 0.6 in
# the order the trials first start (a retry, with the same "x", scores what its trial scored), so
# the ranking is known: the 0.9 trial's first run stops after its last epoch and waits there (the
# test stops it with SIGSTOP meanwhile).
LATE_SPACE = textwrap.dedent('''
    import os
    import time

    import keras
    from search import data

    SCORES = [0.9, 0.8, 0.7, 0.6]

    def build(hp):
        ds = data.current()
        model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                                  keras.layers.Dense(ds.num_classes, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def _mark(name, text=""):
        try:
            fd = os.open(os.path.join(MARKERS, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, text.encode())
        os.close(fd)
        return True

    def fit(hp, model, *args, **kwargs):
        x = hp.Float("x", 0.0, 1.0)
        if not kwargs["epochs"]:  # the discovery of the space, not a trial
            return None
        model.fit(*args, **kwargs)
        scored = os.path.join(MARKERS, f"x-{x!r}")
        if os.path.exists(scored):  # a retry
            return {"val_accuracy": float(open(scored).read())}
        score = next(s for i, s in enumerate(SCORES) if _mark(f"score-{i}"))
        _mark(f"x-{x!r}", repr(score))
        if score == 0.9 and _mark("stalled", str(os.getpid())):
            while not os.path.exists(os.path.join(MARKERS, "go")):
                time.sleep(0.05)
        return {"val_accuracy": score}
''')


def checkpoint_index(url: str, name: str) -> dict:
    """The study's checkpoint index (search.execution.checkpoints): trial number -> entry."""
    import optuna

    from search.execution.checkpoints import INDEX_PREFIX

    storage = optuna.storages.RDBStorage(url)
    try:
        attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(name))
    finally:
        storage.engine.dispose()
    return {int(k[len(INDEX_PREFIX):]): v for k, v in attrs.items() if k.startswith(INDEX_PREFIX) and v}


def test_a_stalled_workers_late_result_changes_no_kept_checkpoint(tmp_path):
    """A worker stopped (SIGSTOP) after the last epoch of the best trial, for longer than the grace
    period: the trial is failed and retried by the other worker, and both kept checkpoints are
    the retry's and the second best's. Continued (SIGCONT), the stalled worker finds its trial
    finished: the index, the files and the trial stay exactly as they were."""
    markers = tmp_path / "markers"
    markers.mkdir()
    space = tmp_path / "late.py"
    space.write_text(f"MARKERS = {str(markers)!r}\n" + LATE_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    folder = tmp_path / "store-artifacts"
    proc = popen_cli("start", str(space), "--storage", url, "--trials", "4", "--epochs", "1",
                     "--workers", "2", "--sampler", "random", "--pruner", "none", "--keep-best", "2",
                     *FAST_FAULTS)
    stalled = markers / "stalled"
    pid = int(wait_for(lambda: stalled.exists() and stalled.read_text().strip(), 150,
                       "the best trial after its last epoch", proc))
    os.kill(pid, signal.SIGSTOP)
    try:
        (markers / "go").touch()  # once it runs again, it goes on at once

        def retried_and_settled(trials):
            by_score = {t.value: t for t in trials if t.state == TrialState.COMPLETE}
            late = [t for t in trials if t.state == TrialState.FAIL]
            kept = {by_score[s].number for s in (0.9, 0.8) if s in by_score}
            if len(by_score) == 4 and late and set(checkpoint_index(url, "late")) == kept \
                    and len(kept) == 2 and len(list(folder.iterdir())) == 2:
                return late[0], by_score
            return None

        late, by_score = wait_for_trials(url, retried_and_settled, 150,
                                         "the stalled trial retried and the top 2 kept", proc,
                                         name="late")
        index, files = checkpoint_index(url, "late"), sorted(p.name for p in folder.iterdir())
        late_attrs = dict(late.user_attrs)
        assert retry_history(by_score[0.9]) == [late.number]
    finally:
        os.kill(pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert checkpoint_index(url, "late") == index
    assert sorted(p.name for p in folder.iterdir()) == files
    trials = {t.number: t for t in trials_of(url, "late")}
    assert trials[late.number].state == TrialState.FAIL and trials[late.number].user_attrs == late_attrs
    assert "checkpoint" not in late_attrs
    for score in (0.9, 0.8):  # both kept checkpoints: said saved, and there
        checkpoint = trials[by_score[score].number].user_attrs["checkpoint"]
        assert checkpoint["state"] == "saved" and (folder / checkpoint["artifact_id"]).is_file()


# ------------------------------------------------------------------ signals to the coordinator

def test_sigterm_to_the_coordinator_stops_its_workers_and_requeues_their_trials(tmp_path):
    url, proc, out, err, took, before, sleeping, pids = interrupt_a_sleeping_trial(
        tmp_path, [signal.SIGTERM])
    assert proc.returncode == 143, err[-3000:]
    lines = error_lines(subprocess.CompletedProcess([], proc.returncode, out, err))
    assert len(lines) == 1 and lines[0].startswith("error: terminated"), err
    assert took < 60  # the sleeping trial did not run to its end (300 s)
    assert_requeued_and_kept(url, before, sleeping, pids)


# ------------------------------------------------------------------ no worker outlives its coordinator


def test_the_workers_of_a_killed_coordinator_finish_their_trial_and_exit(tiny_space, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    epochs = 8
    proc = popen_cli("start", str(tiny_space), "--storage", url, "--trials", "6", "--epochs",
                     str(epochs), "--workers", "2", "--pruner", "none", *FAST_FAULTS)

    def both_in_training_early(trials):
        running = [t for t in trials if t.state == TrialState.RUNNING
                   and 1 <= len(t.intermediate_values) <= epochs - 3]
        done = [t for t in trials if t.state.is_finished()]
        return running if len(running) == 2 and len(done) <= 2 else None

    running = wait_for_trials(url, both_in_training_early, 150, "both workers in a trial", proc)
    pids = [row.pid for row in worker_rows(url)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 150,
             "the workers of the killed coordinator to exit")
    trials = {t.number: t for t in trials_of(url)}
    for t in running:  # each finished the trial it was running
        assert trials[t.number].state == TrialState.COMPLETE
        assert len(trials[t.number].intermediate_values) == epochs
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    assert sum(t.state.is_finished() for t in trials.values()) < 6  # and took no new one
    assert {row.state for row in worker_rows(url)} == {"exited"}
    assert worker_log_folders(os.environ["TMPDIR"]) == []  # the last worker removed the folder


# Loaded into the coordinator (PYTHONPATH): starting its third worker process fails as fork does
# on a machine out of processes or memory. The test only observes; the product has no hook.
SPAWN_HOOK = textwrap.dedent('''
    import errno
    import os
    import subprocess

    if os.environ.get("SEARCH_TEST_FAIL_SPAWN_AT"):
        _init, _started = subprocess.Popen.__init__, []

        def _failing_init(self, args, *more, **kwargs):
            if "search.execution.pool" in list(args):
                _started.append(1)
                if len(_started) == int(os.environ["SEARCH_TEST_FAIL_SPAWN_AT"]):
                    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            _init(self, args, *more, **kwargs)

        subprocess.Popen.__init__ = _failing_init
''')


def test_a_worker_that_cannot_be_started_stops_those_started(tiny_space, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SPAWN_HOOK)
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "SEARCH_TEST_FAIL_SPAWN_AT": "3"}
    result = run_cli("start", str(tiny_space), "--storage", f"sqlite:///{tmp_path / 'store.db'}",
                     "--trials", "4", "--epochs", "1", "--workers", "4", env=env, timeout=300)
    assert result.returncode == 1
    lines = error_lines(result)
    assert lines == ["error: cannot start worker 3 of 4: Resource temporarily unavailable; "
                     "the 2 started were stopped"], result.stderr
    assert pool_workers_under(os.environ["TMPDIR"]) == []
    assert worker_log_folders(os.environ["TMPDIR"]) == []


def test_workers_beyond_the_machine_are_one_line():
    """One more than the cores allow (free memory may lower the bound, never raise it): one line
    saying how many this machine runs and why, before any store is opened."""
    import re

    from search.execution.devices import WORKERS_PER_CORE

    cores = os.cpu_count() or 1
    asked = cores * WORKERS_PER_CORE + 1
    result = run_cli("start", "spaces/cnn.py", "--workers", str(asked), "--storage",
                     "sqlite:////nonexistent/never.db")
    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    shown = re.fullmatch(rf"error: --workers {asked}: this machine runs at most (\d+) local workers "
                         rf"\({cores} CPU cores, {WORKERS_PER_CORE} workers a core; .* GiB a worker\); "
                         r"run more on other machines with `search worker`", lines[0])
    assert shown and 1 <= int(shown.group(1)) < asked, lines[0]


# ------------------------------------------------------------------ the store's file gone and back


def test_sqlite_store_file_gone_for_a_while_and_back(tiny_space, tmp_path):
    """Mid-study, the store's file is moved away (an unmounted share, a careless mv) and back,
    then locked by another process (a backup) for a while: nothing creates an empty store in
    its place, a reader is told in one line, the workers wait, and the study ends with exactly
    its budget and every completed trial intact."""
    from search import api
    from search.errors import SearchError

    db = tmp_path / "store.db"
    away = tmp_path / "elsewhere.db"
    url = f"sqlite:///{db}"
    # 30 epochs, caught in its first 5: the second trial is still training when the file comes back
    # and is locked
    proc = popen_cli("start", str(tiny_space), "--storage", url, "--trials", "2", "--epochs", "30",
                     "--workers", "1", "--pruner", "none", "--heartbeat", "1", "--grace", "30")

    def a_trial_in_training_after_a_completed_one(trials):
        return any(t.state == TrialState.COMPLETE for t in trials) and any(
            t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 5 for t in trials)

    wait_for_trials(url, a_trial_in_training_after_a_completed_one, 150, "a trial in training", proc)
    before = completed(url)
    os.rename(db, away)
    try:
        with pytest.raises(SearchError, match="no store at .*does not exist"):
            api.status("tiny", storage=url)  # a reader is told, and creates nothing
        time.sleep(2.0)
        assert not db.exists(), "an empty store was created in place of the missing file"
    finally:
        os.rename(away, db)
    lock = sqlite3.connect(db, isolation_level=None, timeout=60)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # no worker can write for a while
        time.sleep(5.0)
        assert proc.poll() is None  # waiting for the store, not failing
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert integrity(db) == "ok"
    assert_kept(url, before)
    assert_exact_budget(url, 2)


# ------------------------------------------------------------------ a trial that hangs

HANG_SPACE = textwrap.dedent('''
    import signal
    import time

    import keras
    from search import data
    def build(hp):
        ds = data.current()
        model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                                  keras.layers.Dense(ds.num_classes, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


    def fit(hp, model, *args, **kwargs):
        mode = hp.Choice("mode", ["ok", "sleeps", "stuck"])
        if mode == "sleeps":  # hangs where Python runs: the timer stops it
            time.sleep(600)
        if mode == "stuck":  # hangs where no signal reaches it, as native code can
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(600)
        return 0.5  # "ok": a score without training, well within the timeout
''')


def test_a_hung_trial_fails_with_its_reason_and_the_worker_goes_on(tmp_path):
    space = tmp_path / "hang.py"
    space.write_text(HANG_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    started = time.monotonic()
    result = run_cli("start", str(space), "--storage", url, "--trials", "3", "--epochs", "1",
                     "--sampler", "grid", "--trial-timeout", "2", "--heartbeat", "1", "--grace", "3",
                     timeout=300)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 280  # neither hung trial ran its 600 s
    trials = {t.user_attrs.get("hp_values", t.params)["mode"]: t for t in trials_of(url, "hang")}
    assert trials["ok"].state == TrialState.COMPLETE and trials["ok"].value == 0.5
    for mode in ("sleeps", "stuck"):
        assert trials[mode].state == TrialState.FAIL
        assert trials[mode].user_attrs["timed_out"] is True
        assert trials[mode].user_attrs["fail_reason"].startswith(
            "timed out: still running after 2 s (--trial-timeout)")
    assert "could not be stopped, so its worker restarted" in trials["stuck"].user_attrs["fail_reason"]
    assert not any(retry_history(t) for t in trials.values())  # a hang is not retried
    # one worker process ran all three: the stuck trial restarted it in place (same pid)
    assert len({t.user_attrs["worker"]["pid"] for t in trials.values()}) == 1
    status = json.loads(run_cli("status", "--study", "hang", "--storage", url, "--format",
                                "json").stdout)
    assert status["states"] == {"COMPLETE": 1, "FAIL": 2}
    assert {t["fail_reason"].split(";")[0] for t in status["trials"] if t["fail_reason"]} == \
        {"timed out: still running after 2 s (--trial-timeout)"}


# ------------------------------------------------------------------ a full disk


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a filesystem with no space left (a 4 KiB tmpfs, filled; where no tmpfs can be
    mounted, tests/e2e/test_best.py simulates the failing write instead)."""
    with disks.small_tmpfs(tmp_path / "full", "4k") as mount:
        (mount / "checkpoints").mkdir()
        disks.fill(mount, chunk=1024)
        yield mount / "checkpoints"


def test_checkpoints_on_a_full_disk_are_marked_missing_and_the_trials_kept(tiny_space, tmp_path,
                                                                           full_disk):
    from click.testing import CliRunner

    from search import api
    from search.cli import main
    from search.commands.start import prepare
    from search.options import start_options

    url = f"sqlite:///{tmp_path / 'store.db'}"
    prepare(start_options(str(tiny_space), storage=url, trials=2, epochs=2, keep_best=2,
                         artifacts=str(full_disk))).stored.storage.engine.dispose()
    report = api.worker("tiny", storage=url)
    assert (report.complete, report.failed) == (2, 0)  # the worker went on
    trials = trials_of(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        assert t.value is not None and len(t.user_attrs["history"]["val_accuracy"]) == 2
        checkpoint = t.user_attrs["checkpoint"]
        assert checkpoint["state"] == "missing"
        assert "No space left on device" in checkpoint["reason"], checkpoint
    shown = CliRunner().invoke(main, ["best", "--study", "tiny", "--storage", url])
    assert shown.exit_code == 0 and "missing" in shown.stdout


# ------------------------------------------------------------------ the store's disk fills mid-study


def test_a_store_whose_disk_fills_mid_study_is_waited_for_and_the_study_ends_at_its_exact_budget(
        tiny_space, tmp_path):
    """Issue 18's row "the SQLite file's disk fills mid-study": the workers say once what to do
    and wait; once space is freed the same study goes on to exactly its budget, with no RUNNING
    trial left and nothing to rerun."""
    from pathlib import Path

    with disks.small_tmpfs(tmp_path / "small", "8m") as mount:
        url = f"sqlite:///{mount / 'store.db'}"
        budget = 5
        proc = popen_cli("start", str(tiny_space), "--storage", url, "--trials", str(budget),
                         "--epochs", "3", "--workers", "1", "--pruner", "none", "--keep-best", "0")
        wait_for_trials(url, lambda ts: sum(t.state == TrialState.COMPLETE for t in ts) >= 1, 150,
                        "a completed trial", proc)
        filler = disks.fill(mount)

        def waiting_worker():
            logs = [p for p in Path(os.environ["TMPDIR"]).glob("search-*-workers-*/*") if p.is_file()]
            return any("the store cannot be written" in p.read_text(errors="replace") for p in logs)

        wait_for(waiting_worker, 120, "a worker to say it waits for the store", proc)
        lines = [line for p in Path(os.environ["TMPDIR"]).glob("search-*-workers-*/*") if p.is_file()
                 for line in p.read_text(errors="replace").splitlines() if "cannot be written" in line]
        assert len(lines) == 1 and "database or disk is full" in lines[0] \
            and "free space on the store's filesystem" in lines[0], lines
        filler.unlink()  # space again
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        # the coordinator says it too, once, where the user watches (the workers' logs are files)
        said = [line for line in err.splitlines() if "the store can" in line]
        assert len(said) == 2 and said[0] == lines[0].strip() \
            and said[1].startswith("the store can be written again"), err[-3000:]
        trials = trials_of(url)
        counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        assert counts[TrialState.RUNNING] == 0 and counts[TrialState.WAITING] == 0, counts
        # exactly the budget: every trial that failed (a stale heartbeat while it waited) was retried
        superseded = {n for t in trials for n in retry_history(t)}
        assert sum(t.state == TrialState.COMPLETE for t in trials) == budget, counts
        assert len([t for t in trials if t.number not in superseded]) == budget
        assert integrity(mount / "store.db") == "ok"
