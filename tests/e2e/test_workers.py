"""Workers of whole studies on one SQLite store: a killed worker, Ctrl-C, failing trials, GPU
pinning, the pruner stored with the study, bad worker options. tests/e2e/test_postgres.py runs the
store-level faults on a real PostgreSQL server; claims, heartbeats, retries, slots, pruners and
the deadline unit by unit: tests/unit/ (storage/test_records.py, execution/test_faults.py,
execution/test_devices.py, space/test_pruners.py)."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from search.testing.cli import error_lines, popen_cli, run_cli
from search.testing.faults import kill_a_worker_mid_trial
from search.testing.studies import FAST_FAULTS, retry_history, trials_of, wait_for_trials, worker_rows


@pytest.mark.slow
def test_sqlite_study_survives_a_killed_worker(tiny_space, store_url):
    kill_a_worker_mid_trial(store_url, tiny_space, workers=4, budget=7)


@pytest.mark.slow
def test_ctrl_c_requeues_the_running_trials_and_its_resume_command_runs_them(tiny_space, store_url):
    proc = popen_cli("start", str(tiny_space), "--study", "ctrlc", "--storage", store_url, "--trials", "4",
                     "--epochs", "5", "--workers", "2", "--pruner", "none", *FAST_FAULTS)

    def two_trials_mid_training(trials):
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        # one of them with three epochs or more to go: a slow machine may run the other to its
        # end before the Ctrl-C reaches the workers, not both
        if len(running) == 2 and min(len(t.intermediate_values) for t in running) <= 2:
            return running
        return None

    running = wait_for_trials(store_url, two_trials_mid_training, 150, "two trials in training", proc,
                              name="ctrlc")
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal reaches the coordinator
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130
    lines = error_lines(subprocess.CompletedProcess([], 130, out, err))
    assert len(lines) == 1 and "interrupted" in lines[0], err
    trials = {t.number: t for t in trials_of(store_url, "ctrlc")}
    copies = [t for t in trials.values() if t.state == TrialState.WAITING]
    stopped = [trials[t.number] for t in running if trials[t.number].state == TrialState.FAIL]
    assert stopped, "no trial was interrupted"  # (one at its last epoch may complete instead)
    for t in stopped:
        assert t.user_attrs["interrupted"] is True
        assert len(t.intermediate_values) < 5  # stopped at an epoch's end, not run to the end
        assert [c.params for c in copies if retry_history(c) == [t.number]] == [t.params]
    assert all(w.state == "interrupted" for w in worker_rows(store_url, "ctrlc"))
    # the printed command, run verbatim, resumes this study: it runs the queued copies first and
    # ends with exactly the budget
    command = shlex.split(lines[0].split("run again on resume: ", 1)[1])
    assert command[:3] == ["search", "start", str(tiny_space)] and "ctrlc" in command
    result = run_cli(*command[1:])
    assert result.returncode == 0, result.stderr
    assert "Resuming study ctrlc" in result.stdout
    assert [s.study_name for s in optuna.get_all_study_summaries(store_url)] == ["ctrlc"]
    trials = trials_of(store_url, "ctrlc")
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
    """Through the CLI: one line on stderr, non-zero exit (the other checks: tests/unit/test_options.py)."""
    result = run_cli(*args, "--storage", store_url)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0], result.stderr
