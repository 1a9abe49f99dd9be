"""Crash-only trials: a worker process that dies in a trial, in any way, has that trial failed
at once by its pool with how and where it died, retried by the lost-worker rule (--max-retry),
and a new worker takes its slot; nothing is left RUNNING and the study that produced nothing
exits non-zero with its most common failure.

Each row of the probe table of issue 18 that dies in a trial is one case: ``os._exit(0)`` in
build(), ``sys.exit()`` in fit(), a segfault in fit(), a SIGKILL in fit() (what the kernel's
out-of-memory killer sends). Before this, each left its trial RUNNING and the study "finished"
(exit status 0, or a worker error with the budget not spent).
"""

from __future__ import annotations

import textwrap

import pytest
from optuna.trial import TrialState

from search.testing.cli import error_lines, run_cli
from search.testing.studies import retry_history, trials_of, worker_rows

pytestmark = pytest.mark.slow

# Dies as CRASH says in STEP, unless the file DONE exists (then it trains: a retry succeeds).
CRASH_SPACE = textwrap.dedent('''
    import ctypes
    import os
    import signal
    import sys

    import keras
    from search import data

    def crash(step):
        if step != STEP or os.path.exists(DONE):
            return
        if ONCE:
            open(DONE, "w").close()
        if CRASH == "os_exit":
            os._exit(0)
        if CRASH == "sys_exit":
            sys.exit()
        if CRASH == "segfault":
            ctypes.string_at(0)
        if CRASH == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)

    def build(hp):
        ds = data.current()
        model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                                  keras.layers.Dense(ds.num_classes, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if sys.argv[0].endswith("pool.py"):  # a worker's trial, not the discovery of the space
            crash("build")
        return model

    def fit(hp, model, *args, **kwargs):
        if kwargs["epochs"]:  # a trial, not the discovery of the space
            crash("fit")
        return model.fit(*args, **kwargs)
''')


def crash_space(tmp_path, crash: str, step: str, once: bool = False):
    space = tmp_path / "crash.py"
    source = (f"CRASH = {crash!r}\nSTEP = {step!r}\nONCE = {once!r}\nDONE = {str(tmp_path / 'done')!r}\n"
              + CRASH_SPACE)
    space.write_text(source)
    return space


@pytest.mark.parametrize("crash, step, reason", [
    ("os_exit", "build", "worker exited with status 0 during build()"),
    ("sys_exit", "fit", "worker exited with status 0 during fit()"),
    ("segfault", "fit", "worker killed by SIGSEGV during fit(): Fatal Python error: Segmentation "
                        "fault in crash (crash.py, line {line})"),
    ("sigkill", "fit", "worker killed by SIGKILL (by the kernel: out of memory? or a kill -9) during fit()"),
])
def test_a_worker_that_dies_in_a_trial_fails_it_at_once_with_the_reason(tmp_path, crash, step, reason):
    space = crash_space(tmp_path, crash, step)
    line = 1 + next(n for n, text in enumerate(space.read_text().splitlines()) if "string_at(0)" in text)
    reason = reason.format(line=line)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    # --grace 600: a lost heartbeat would take ten minutes; only the pool's watch fails the trial
    result = run_cli("start", str(space), "--storage", url, "--trials", "1", "--epochs", "1",
                     "--workers", "1", "--max-retry", "1", "--heartbeat", "1", "--grace", "600",
                     timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = error_lines(result)
    assert lines[-1] == (f"error: no trial of study 'crash' completed (2 failed); the most common "
                         f"reason (2 of 2): {reason}"), result.stderr[-3000:]
    trials = trials_of(url, "crash")
    assert [(t.state, t.user_attrs.get("fail_reason")) for t in trials] == [(TrialState.FAIL, reason)] * 2
    assert retry_history(trials[1]) == [0]  # the retry, by the lost-worker rule (--max-retry 1)
    rows = worker_rows(url, "crash")
    assert len(rows) == 2 and all(r.state == "exited" for r in rows), rows  # the second took the slot


def test_a_trial_whose_worker_died_once_completes_on_a_new_worker(tmp_path):
    """A SIGKILL in fit() (a one-off: the out-of-memory killer, kill -9): the trial fails at
    once, long before its heartbeat goes stale, and its retry runs on the worker started in the
    dead one's place: the study ends with exactly its budget, complete, and exit status 0."""
    space = crash_space(tmp_path, "sigkill", "fit", once=True)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = run_cli("start", str(space), "--storage", url, "--trials", "2", "--epochs", "1",
                     "--workers", "1", "--heartbeat", "1", "--grace", "600", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = trials_of(url, "crash")
    died = [t for t in trials if t.state == TrialState.FAIL]
    assert len(died) == 1 and died[0].user_attrs["fail_reason"].startswith("worker killed by SIGKILL")
    counted = [t for t in trials if t.number not in {n for u in trials for n in retry_history(u)}]
    assert [t.state for t in counted] == [TrialState.COMPLETE] * 2
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert error_lines(result) == ["trial 0 failed: worker killed by SIGKILL (by the kernel: out of "
                                   "memory? or a kill -9) during fit(): queued again"]
