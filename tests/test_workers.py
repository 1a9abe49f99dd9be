"""Workers on one store: exact claims, heartbeats and retries, a killed worker, Ctrl-C, failing
trials, GPU pinning, pruners and the deadline. SQLite here; tests/test_postgres.py runs the
store-level faults on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from optuna.trial import TrialState

from search import storage
from search.errors import SearchError
from search.execution.devices import plan_slots
from search.execution.faults import StaleTrialRetry, fail_stale_trials, open_for_work
from search.execution.worker import recount_claims
from search.options import StudyConfig, check
from search.space.pruners import make_pruner
from tests.conftest import REPO, error_lines, run_cli

FAST_FAULTS = ["--heartbeat", "1", "--grace", "4"]


# ---------------------------------------------------------------------------- helpers


def popen_cli(*args, env=None):
    """Start the ``search`` CLI in the background, as a user would in a terminal."""
    full_env = dict(os.environ)
    full_env.pop("SEARCH_STORAGE", None)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "search", *args], cwd=REPO, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Poll ``predicate()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended before {what}: {out[-2000:]} {err[-2000:]}")
        time.sleep(0.3)
    if proc is not None:
        proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def trials_of(url: str, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).trials
    except KeyError:
        return []


def worker_rows(url: str, name: str = "tiny"):
    store = storage.open_storage(url)
    try:
        return storage.WorkerRegistry(store.engine).list(name)
    finally:
        store.engine.dispose()


def running_worker_after_a_completed_trial(url: str, epochs: int | None = None):
    """A live worker in the middle of a trial, once a trial has completed: one epoch reported
    (``epochs`` given: at least three of them still to come)."""
    trials = trials_of(url)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return None
    # epochs reported, more to come: the trial is surely still running when the kill lands
    last = 1 if epochs is None else epochs - 3
    reported = {t.number for t in trials
                if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= last}
    for row in worker_rows(url):
        if row.state == "running" and row.trial_number in reported:
            return row
    return None


def retry_history(t) -> list[int]:
    return t.system_attrs.get("retry_history", [])


def assert_killed_trial_retried(url: str, killed: int, completed_before: dict, budget: int):
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
    # nothing completed was lost or changed
    for number, value in completed_before.items():
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].value == value
    # exactly the budget, counting the retry in place of the trial it re-ran
    superseded = {n for t in trials for n in retry_history(t)}
    counted = [t for t in trials if t.number not in superseded]
    assert len(counted) == budget
    assert all(t.state == TrialState.COMPLETE for t in counted), \
        [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in counted]


def kill_a_worker_mid_trial(url: str, space, workers: int, budget: int, epochs: int = 8):
    """Run a study with ``workers`` local workers, SIGKILL one of them in the middle of a trial
    (after another trial completed), and check the study still completes exactly."""
    proc = popen_cli("start", str(space), "--storage", url, "--trials", str(budget), "--epochs",
                     str(epochs), "--workers", str(workers), "--pruner", "none", *FAST_FAULTS)
    row = wait_for(lambda: running_worker_after_a_completed_trial(url, epochs), 150,
                   "a worker in the middle of a trial", proc)
    completed_before = {t.number: t.value for t in trials_of(url) if t.state == TrialState.COMPLETE}
    os.kill(row.pid, signal.SIGKILL)
    killed = [t.number for t in trials_of(url) if t.state == TrialState.RUNNING
              and t.user_attrs.get("worker", {}).get("pid") == row.pid]
    assert killed == [row.trial_number]  # the kill landed mid-trial
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "killed by signal 9" in out  # the coordinator says which worker died
    assert_killed_trial_retried(url, row.trial_number, completed_before, budget)
    status = json.loads(run_cli("status", "--study", "tiny", "--storage", url, "--format", "json").stdout)
    dead_row = next(t for t in status["trials"] if t["number"] == row.trial_number)
    assert "worker lost" in dead_row["fail_reason"] and "re-run as trial" in dead_row["fail_reason"]
    return row


# ---------------------------------------------------------------------------- unit level


def test_slots_per_gpu_workers_and_cpu(monkeypatch):
    monkeypatch.setattr("search.execution.devices.visible_gpus", list)
    assert plan_slots() == [None]
    assert plan_slots(per_gpu=3) == [None, None, None]
    assert plan_slots(workers=2) == [None, None]
    assert plan_slots(gpus="0,1", per_gpu=2) == ["0", "0", "1", "1"]
    assert plan_slots(gpus="1") == ["1"]
    monkeypatch.setattr("search.execution.devices.visible_gpus", lambda: ["0", "1"])
    assert plan_slots() == ["0", "1"]
    assert plan_slots(workers=3) == ["0", "1", "0"]
    with pytest.raises(SearchError, match="no GPU 7"):
        plan_slots(gpus="0,7")
    for kwargs, message in [({"gpus": "0,,1"}, "comma-separated"), ({"gpus": "0,0"}, "listed twice"),
                            ({"workers": 2, "per_gpu": 2}, "not both")]:
        with pytest.raises(SearchError, match=message):
            plan_slots(**kwargs)
    with pytest.raises(SearchError, match="per_gpu must be at least 1"):
        check("per_gpu", 0)  # --per-gpu is checked as an option, before any slot is planned


@pytest.mark.parametrize("name, cls", [("none", optuna.pruners.NopPruner),
                                       ("median", optuna.pruners.MedianPruner),
                                       ("hyperband", optuna.pruners.HyperbandPruner),
                                       ("asha", optuna.pruners.SuccessiveHalvingPruner)])
def test_pruners_are_optunas_and_stop_on_request(name, cls):
    pruner = make_pruner(name, max_epochs=9)
    assert isinstance(pruner, cls)  # Optuna's own class (Hyperband's brackets depend on it)
    study = optuna.create_study(pruner=pruner, direction="maximize")
    trial = study.ask()
    trial.report(0.5, 0)
    assert not trial.should_prune()  # one report, first trial: no pruner stops it
    pruner.stop.set()
    assert trial.should_prune()  # Ctrl-C: stop at the end of this epoch


def test_claims_stop_at_the_deadline(tmp_path):
    records = storage.StudyRecords(storage.open_storage(f"sqlite:///{tmp_path / 'a.db'}").engine)
    records.add(storage.StudyRecord(study_name="s", space_path="x.py", space_sha256="0" * 64,
                                    space_source="", config={}, budget=10, deadline=time.time() + 60))
    assert records.claim("s")
    records.update("s", deadline=time.time() - 1)
    assert not records.claim("s") and records.get("s").past_deadline
    records.update("s", deadline=None)  # a resume without --timeout
    assert records.claim("s") and records.get("s").claimed == 2


def test_a_stale_trial_is_failed_retried_once_and_gives_its_slot_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = storage.open_storage(url)
    records = storage.StudyRecords(store.engine)
    config = StudyConfig(space_path="x.py", data="digits", heartbeat=1, grace=1, max_retry=1)
    records.add(storage.StudyRecord(study_name="s", space_path="x.py", space_sha256="0" * 64,
                                    space_source="", config=config.to_dict(), budget=3))
    optuna.create_study(study_name="s", storage=store)
    handle = open_for_work(url, "s")
    assert isinstance(handle.storage.heartbeat_stale_trial_callback, StaleTrialRetry)
    study = optuna.load_study(study_name="s", storage=handle.storage)
    assert records.claim("s")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    handle.storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)  # no heartbeat for longer than the grace period: the worker "died"
    fail_stale_trials(study)
    fail_stale_trials(study)  # a second reaper finds nothing more to do
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params and trials[1].system_attrs["retry_history"] == [0]
    assert records.get("s").claimed == 0  # the retry runs on the dead trial's slot
    assert recount_claims(handle) == 0
    # the retry dies too: max_retry=1 is spent, the failure keeps its slot
    assert records.claim("s")
    retry = study.ask()
    assert retry.number == 1 and retry.params == trials[0].params
    handle.storage.record_heartbeat(retry._trial_id)
    time.sleep(2.2)
    fail_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert records.get("s").claimed == 1 == recount_claims(handle)


# ---------------------------------------------------------------------------- whole studies


@pytest.mark.slow
def test_sqlite_study_survives_a_killed_worker(tiny_space, store_url):
    kill_a_worker_mid_trial(store_url, tiny_space, workers=4, budget=7)


@pytest.mark.slow
def test_ctrl_c_requeues_the_running_trials_and_a_resume_runs_them(tiny_space, store_url):
    proc = popen_cli("start", str(tiny_space), "--storage", store_url, "--trials", "4",
                     "--epochs", "5", "--workers", "2", "--pruner", "none", *FAST_FAULTS)

    def two_trials_mid_training():
        running = [t for t in trials_of(store_url)
                   if t.state == TrialState.RUNNING and t.intermediate_values]
        return running if len(running) == 2 else None

    running = wait_for(two_trials_mid_training, 150, "two trials in training", proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal reaches the coordinator
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130
    lines = error_lines(subprocess.CompletedProcess([], 130, out, err))
    assert len(lines) == 1 and "interrupted" in lines[0], err
    trials = {t.number: t for t in trials_of(store_url)}
    copies = [t for t in trials.values() if t.state == TrialState.WAITING]
    stopped = [trials[t.number] for t in running if trials[t.number].state == TrialState.FAIL]
    assert stopped, "no trial was interrupted"  # (one at its last epoch may complete instead)
    for t in stopped:
        assert t.user_attrs["interrupted"] is True
        assert len(t.intermediate_values) < 5  # stopped at an epoch's end, not run to the end
        assert [c.params for c in copies if retry_history(c) == [t.number]] == [t.params]
    assert all(w.state == "interrupted" for w in worker_rows(store_url))
    # the resume runs the queued copies first and ends with exactly the budget
    result = run_cli("start", str(tiny_space), "--storage", store_url)
    assert result.returncode == 0, result.stderr
    trials = trials_of(store_url)
    superseded = {n for t in trials for n in retry_history(t)}
    counted = [t for t in trials if t.number not in superseded]
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    for t in stopped:
        rerun = next(c for c in trials if retry_history(c) == [t.number])
        assert rerun.state == TrialState.COMPLETE and rerun.user_attrs["attempt"] == 2


FRAGILE_SPACE = textwrap.dedent('''
    import keras
    import tensorflow as tf
    from search import data
    def build(hp):
        ds = data.current()
        mode = hp.Choice("mode", ["ok", "oom", "nan"])  # the default (first) builds
        if mode == "oom":  # what TensorFlow raises when a GPU runs out of memory
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4096,4096]")
        model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                                  keras.layers.Dense(ds.num_classes, activation="softmax")])
        loss = "sparse_categorical_crossentropy"
        if mode == "nan":
            def loss(y, p):
                return keras.ops.mean(p) * float("nan")
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        return model
''')


@pytest.mark.slow
def test_oom_and_nan_trials_fail_with_their_reason_and_the_worker_goes_on(tmp_path, store_url):
    space = tmp_path / "fragile.py"
    space.write_text(FRAGILE_SPACE)
    result = run_cli("start", str(space), "--storage", store_url, "--trials", "3", "--epochs", "2",
                     "--sampler", "grid", "--workers", "1")
    assert result.returncode == 0, result.stderr
    trials = {t.user_attrs["hp_values"]["mode"]: t for t in trials_of(store_url, "fragile")}
    assert trials["oom"].state == TrialState.FAIL
    assert "ResourceExhaustedError" in trials["oom"].user_attrs["fail_reason"]
    assert trials["nan"].state == TrialState.FAIL
    assert "NaN" in trials["nan"].user_attrs["fail_reason"]
    assert trials["ok"].state == TrialState.COMPLETE
    assert len({t.user_attrs["worker"]["pid"] for t in trials.values()}) == 1  # one worker ran all three


@pytest.mark.slow
def test_gpus_pin_one_worker_process_per_gpu_and_status_shows_them(tiny_space, store_url):
    # No GPU here: the pinning is visible in CUDA_VISIBLE_DEVICES of each worker (the backend
    # finds no such device and trains on the CPU).
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "3", "--epochs", "1",
                     "--gpus", "0,1", "--pruner", "asha", "--timeout", "600")
    assert result.returncode == 0, result.stderr
    trials = trials_of(store_url)
    assert len(trials) == 3
    assert {t.user_attrs["worker"]["gpu"] for t in trials} <= {"0", "1"}
    rows = worker_rows(store_url)
    assert sorted(r.gpu for r in rows) == ["0", "1"]
    assert all(r.state == "exited" for r in rows) and sum(r.trials_run for r in rows) == 3
    status = json.loads(run_cli("status", "--study", "tiny", "--storage", store_url, "--format", "json").stdout)
    assert status["deadline"] is not None
    assert {w["gpu"] for w in status["workers"]} == {"0", "1"} and not any(w["live"] for w in status["workers"])
    # the stored pruner is every worker's; a resume may not contradict it
    refused = run_cli("start", str(tiny_space), "--storage", store_url, "--pruner", "median")
    assert refused.returncode != 0 and "--pruner asha" in error_lines(refused)[0]


@pytest.mark.parametrize("args, message", [
    (["worker", "--study", "tiny", "--gpus", "0,,1"], "comma-separated list of GPU ids"),
    (["start", "spaces/cnn.py", "--pruner", "sometimes"], "Invalid value for '--pruner'"),
    (["start", "spaces/cnn.py", "--heartbeat", "5", "--grace", "5"], "--grace must be longer"),
])
def test_bad_worker_options_are_one_line(store_url, args, message):
    """Through the CLI: one line on stderr, non-zero exit (the other checks: test_start_options)."""
    result = run_cli(*args, "--storage", store_url)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("options, message", [
    ({"timeout": 0}, "--timeout must be a positive"),
    ({"heartbeat": 0}, "--heartbeat must be at least 1"),
    ({"grace": 3, "heartbeat": 3}, "--grace must be longer"),
    ({"pruner": "sometimes"}, "unknown pruner"),
])
def test_start_options_are_checked_before_anything_is_stored(options, message):
    from search.options import start_options

    with pytest.raises(SearchError) as raised:
        start_options("spaces/cnn.py", **options)
    shown = raised.value.as_flag() if hasattr(raised.value, "as_flag") else str(raised.value)
    assert message in shown
