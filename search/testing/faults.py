"""Faults a test inflicts on a study that ``search start`` runs, and the checks that follow:
SIGKILL of a worker in the middle of a trial (:func:`kill_a_worker_mid_trial`), signals to the
coordinator while a trial sleeps in fit() (:func:`interrupt_a_sleeping_trial`)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from optuna.trial import TrialState

from search.testing.cli import popen_cli, run_cli
from search.testing.spaces import TINY_SPACE
from search.testing.studies import (
    FAST_FAULTS,
    completed,
    pid_alive,
    retry_history,
    running_worker_after_a_completed_trial,
    trials_of,
    wait_for,
    wait_for_trials,
    worker_rows,
)


def assert_kept(url: str, before: dict[int, tuple], name: str = "tiny") -> None:
    """Every trial completed before the fault is still there, unchanged, history and all."""
    after = completed(url, name)
    for number, (value, params, history) in before.items():
        assert number in after, f"completed trial {number} was lost"
        assert after[number] == (value, params, history)
        assert history and len(history["val_accuracy"]) >= 1


# ------------------------------------------------------------------ SIGKILL of a worker mid-trial


def assert_killed_trial_retried(url: str, killed: int, completed_before: dict, budget: int):
    """Trial ``killed`` failed and was run again once, to completion, with its parameters; nothing
    completed before was lost or changed; the study ran exactly ``budget`` trials."""
    trials = trials_of(url)
    by_number = {t.number: t for t in trials}
    dead = by_number[killed]
    assert dead.state == TrialState.FAIL
    retries = [t for t in trials if retry_history(t) and retry_history(t)[0] == killed]
    assert len(retries) == 1, [(t.number, t.state, retry_history(t)) for t in trials]
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == dead.params  # the same configuration, run again
    assert retry.user_attrs["attempt"] == 2
    assert "fail_reason" not in retry.user_attrs  # nothing of the dead run carried over
    # nothing completed was lost or changed
    for number, value in completed_before.items():
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].value == value
    # exactly the budget, counting the retry in place of the trial it re-ran
    superseded = {n for t in trials for n in retry_history(t)}
    counted = [t for t in trials if t.number not in superseded]
    assert len(counted) == budget
    assert all(t.state == TrialState.COMPLETE for t in counted), \
        [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in counted]


def kill_a_worker_mid_trial(url: str, space, workers: int, budget: int, epochs: int = 20):
    """Run a study with ``workers`` local workers, SIGKILL one of them in the middle of a trial
    (after another trial completed), and check the study still completes exactly."""
    proc = popen_cli("start", str(space), "--storage", url, "--trials", str(budget), "--epochs",
                     str(epochs), "--workers", str(workers), "--pruner", "none", *FAST_FAULTS)
    def a_worker_mid_trial(trials):
        row = running_worker_after_a_completed_trial(url, epochs, trials)
        return (row, trials) if row is not None else None

    row, seen = wait_for_trials(url, a_worker_mid_trial, 150, "a worker in the middle of a trial", proc)
    # At once, while its trial has half its epochs or more to go (a loaded machine ran three
    # epochs of the tiny space between the read and the kill: the trial had completed); what had
    # completed is what that same read saw.
    os.kill(row.pid, signal.SIGKILL)
    completed_before = {t.number: t.value for t in seen if t.state == TrialState.COMPLETE}
    def of_the_worker(trials, states):
        return [t.number for t in trials if t.state in states
                and t.user_attrs.get("worker", {}).get("pid") == row.pid]

    # the kill landed mid-trial: the trial ran before it, and after it is still RUNNING or was
    # already failed by the pool that saw its worker die (within a second, on a fast machine)
    assert of_the_worker(seen, (TrialState.RUNNING,)) == [row.trial_number]
    assert of_the_worker(trials_of(url), (TrialState.RUNNING, TrialState.FAIL)) == [row.trial_number]
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "killed by SIGKILL" in out  # the coordinator says which worker died
    assert_killed_trial_retried(url, row.trial_number, completed_before, budget)
    status = json.loads(run_cli("status", "--study", "tiny", "--storage", url, "--format", "json").stdout)
    dead_row = next(t for t in status["trials"] if t["number"] == row.trial_number)
    # failed by the pool as it saw the worker die, with how and where (not after the grace period)
    assert dead_row["fail_reason"].startswith("worker killed by SIGKILL") \
        and " during " in dead_row["fail_reason"] and "re-run as trial" in dead_row["fail_reason"], dead_row
    return row


# ------------------------------------------------------------------ signals to the coordinator

# Trials after the marker file appears sleep in fit() (as a long epoch would): only an
# interruption that does not wait for the end of the epoch ends them promptly.
SLOW_SPACE = TINY_SPACE.replace(
    "def fit(hp, model, *args, **kwargs):\n",
    "def fit(hp, model, *args, **kwargs):\n"
    "    import os, time\n"
    "    if os.path.exists(MARKER):\n"
    "        open(MARKER + '.sleeping', 'w').close()\n"
    "        time.sleep(300)\n")


def interrupt_a_sleeping_trial(tmp_path: Path, signals: list[int]):
    """Start a study with one worker; once a trial completed, the next one sleeps in fit(); send
    ``signals`` to the coordinator (1 s apart). Returns the process, its output, the seconds from
    the last signal to its exit, the completed trials before, and the sleeping trial."""
    marker = tmp_path / "slow"
    space = tmp_path / "tiny.py"
    space.write_text(f"MARKER = {str(marker)!r}\n" + SLOW_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    proc = popen_cli("start", str(space), "--storage", url, "--trials", "4", "--epochs", "1",
                     "--workers", "1", "--pruner", "none", *FAST_FAULTS)
    wait_for(lambda: completed(url), 150, "a completed trial", proc)
    marker.touch()
    sleeping = Path(str(marker) + ".sleeping")
    wait_for(sleeping.exists, 120, "a trial sleeping in fit()", proc)
    before = completed(url)
    running = [t for t in trials_of(url) if t.state == TrialState.RUNNING]
    assert len(running) == 1
    pids = {r.pid for r in worker_rows(url)}
    for i, sig in enumerate(signals):
        if i:
            time.sleep(1.0)
        proc.send_signal(sig)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - sent
    return url, proc, out, err, took, before, running[0], pids


def assert_requeued_and_kept(url, before, sleeping, pids):
    """After the interruption: every completed trial kept, the sleeping trial failed as
    interrupted and queued again once with its parameters, no worker left alive."""
    assert_kept(url, before)
    trials = {t.number: t for t in trials_of(url)}
    stopped = trials[sleeping.number]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["interrupted"] is True
    assert stopped.user_attrs["fail_reason"] == "interrupted by the user"
    copies = [t for t in trials.values() if retry_history(t) == [sleeping.number]]
    assert [(c.state, c.params) for c in copies] == [(TrialState.WAITING, stopped.params)]
    assert not any(pid_alive(pid) for pid in pids), "a worker outlived its coordinator"
    assert all(r.state == "interrupted" for r in worker_rows(url))
