"""A chaos test: a study of 30 short trials on PostgreSQL with 4 local workers while a driver
SIGKILLs a worker in the middle of a trial four times, SIGSTOPs one past its grace period (until
the store shows its trial failed and queued again) and continues it, and restarts PostgreSQL once.

At the end: exactly the budget of trials that were not superseded, all complete, each with its
value and history; the kept checkpoints are the best three completed trials, saved; no trial
RUNNING; no attempt completed twice. The driver acts on what the store shows (a number of
completed trials, a trial running on a worker, a trial failed), never after a fixed sleep, so
it passes on a slow machine; it prints its counts.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from search import trial_attrs
from search.testing.cli import popen_cli
from search.testing.studies import retry_history, trials_of, worker_rows

pytestmark = pytest.mark.slow

BUDGET = 30
WORKERS = 4
GRACE = 6
# What the driver does once this many trials completed (the store's event it waits on).
SCHEDULE = [(3, "kill"), (7, "stop"), (11, "kill"), (15, "restart"), (19, "kill"), (24, "kill")]


class StoreWatch:
    """The study's trials, read through one open connection that rides out the server restart."""

    def __init__(self, url: str, name: str, proc):
        self.url, self.name, self.proc = url, name, proc
        self.study = None

    def trials(self) -> list[optuna.trial.FrozenTrial] | None:
        try:
            if self.study is None:
                if not trials_of(self.url, self.name):
                    return None
                storage = optuna.storages.RDBStorage(self.url, engine_kwargs={"pool_pre_ping": True})
                self.study = optuna.load_study(study_name=self.name, storage=storage)
            return self.study.get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001  (the server is restarting: read again)
            return None

    def wait(self, predicate, what: str, timeout: float = 240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None or what == "the end", \
                f"search start exited ({self.proc.returncode}) while waiting for {what}"
            trials = self.trials()
            found = predicate(trials) if trials is not None else None
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


def running_worker(trials) -> tuple[int, int] | None:
    """(pid, trial number) of a worker in the middle of a trial: an epoch begun, its pid stored."""
    running = [(trial_attrs.worker_pid(t), t.number) for t in trials
               if t.state == TrialState.RUNNING and trial_attrs.worker_pid(t)]
    return random.choice(running) if running else None


def test_a_study_survives_killed_and_stalled_workers_and_a_store_restart(tiny_space, pg_url,
                                                                         postgres_server, tmp_path):
    started = time.monotonic()
    artifacts = tmp_path / "artifacts"
    proc = popen_cli("start", str(tiny_space), "--storage", pg_url, "--trials", str(BUDGET),
                     "--epochs", "1", "--workers", str(WORKERS), "--pruner", "none",
                     "--heartbeat", "1", "--grace", str(GRACE), "--artifacts", str(artifacts),
                     "--keep-best", "3")
    watch = StoreWatch(pg_url, "tiny", proc)
    done = Counter()
    try:
        for after, action in SCHEDULE:
            watch.wait(lambda ts: sum(t.state == TrialState.COMPLETE for t in ts) >= after,
                       f"{after} completed trials")
            if action == "restart":
                postgres_server.restart(down_s=2.0)
            else:
                pid, number = watch.wait(running_worker, "a worker in a trial")
                if action == "kill":
                    os.kill(pid, signal.SIGKILL)
                    watch.wait(lambda ts: ts[number].state != TrialState.RUNNING,
                               f"trial {number} of the killed worker failed")
                else:
                    os.kill(pid, signal.SIGSTOP)
                    try:  # past its grace period: its trial is failed and queued again
                        watch.wait(lambda ts: any(retry_history(t)[-1:] == [number] for t in ts),
                                   f"trial {number} of the stopped worker queued again")
                    finally:
                        os.kill(pid, signal.SIGCONT)
            done[action] += 1
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    trials = trials_of(pg_url)
    superseded = {n for t in trials for n in retry_history(t)}
    counted = [t for t in trials if t.number not in superseded]
    states = Counter(t.state.name for t in trials)
    print(f"\nchaos: {BUDGET} trials, {WORKERS} workers, {dict(done)} in "
          f"{time.monotonic() - started:.0f} s: {len(trials)} trials stored {dict(states)}, "
          f"{len(superseded)} superseded by a retry, {len(worker_rows(pg_url))} worker processes")
    assert len(counted) == BUDGET
    assert [t.state for t in counted] == [TrialState.COMPLETE] * BUDGET, \
        [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in counted]
    assert states["RUNNING"] == 0 and states["WAITING"] == 0
    assert all(t.value is not None and t.user_attrs["history"]["val_accuracy"] for t in counted)
    # no attempt completed twice: a retried trial's originals are all failures
    assert all(trials[n].state == TrialState.FAIL for n in superseded)
    killed = [t for t in trials if (t.user_attrs.get("fail_reason") or "").startswith("worker killed by SIGKILL")]
    assert 1 <= len(killed) <= done["kill"]  # one may have landed just after its trial was stored
    best = sorted(counted, key=lambda t: t.value, reverse=True)[:3]
    kept = [t for t in trials if (t.user_attrs.get("checkpoint") or {}).get("state") == "saved"
            and (artifacts / t.user_attrs["checkpoint"]["artifact_id"]).is_file()]
    assert {t.value for t in kept} >= {t.value for t in best}
    assert len(list(artifacts.iterdir())) == 3
    assert all(r.state == "exited" for r in worker_rows(pg_url))
