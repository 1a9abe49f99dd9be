"""Keras Tuner conformance: the keras-io guides' patterns (search.testing.kt_guides) run unchanged
through `search start` and through search.Tuner, each compared with what Keras Tuner 1.4.8 itself
does on the same code and data (trials, states, objective and direction), on the TensorFlow and
the JAX backend; the drop-in script with a second process's `search worker`; the bad inputs."""

import json
import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from search.testing.cli import REPO, error_lines, run_cli
from search.testing.kt_guides import PATTERNS

pytestmark = pytest.mark.slow

BACKENDS = ["tensorflow", "jax"]
KT_STATE = {"COMPLETED": "COMPLETE", "FAILED": "FAIL", "STOPPED": "PRUNED", "INVALID": "FAIL"}


def backend_env(backend):
    if backend == "jax":
        pytest.importorskip("jax")
    return {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}


def outcome(name, which, folder, backend, storage=None):
    """A pattern run by Keras Tuner's RandomSearch or search.Tuner in a process of its own."""
    args = [sys.executable, "-m", "search.testing.kt_guides", name, which, str(folder)]
    done = subprocess.run(args + ([storage] if storage else []), capture_output=True, text=True,
                          env=backend_env(backend), cwd=folder.parent, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("OUTCOME "))


def cli_outcome(name, tmp_path, backend, store_url):
    pattern = PATTERNS[name]
    space = tmp_path / f"{name}.py"
    space.write_text(pattern.space_source())
    result = run_cli("start", str(space), "--storage", store_url, "--trials", str(pattern.trials),
                     "--epochs", "2", *pattern.cli_objective(), env={"KERAS_BACKEND": backend})
    study = optuna.load_study(study_name=name, storage=store_url)
    return result, study


def states(kt_like):
    return [KT_STATE.get(s, s) for s in kt_like["states"]]


# Patterns whose every trial completes in Keras Tuner: the same here, from the CLI and the tuner.
COMPLETING = ["build_function", "tuned_fit", "custom_metric", "fit_returns_float", "fit_returns_dict",
              "hyper_image_augment"]


# Each case runs three processes (Keras Tuner, search.Tuner, the CLI): every pattern on TensorFlow,
# two of them on JAX too (CI's time: the whole end-to-end set must stay in minutes).
GUIDE_CASES = [(name, "tensorflow") for name in COMPLETING] + [("build_function", "jax"), ("tuned_fit", "jax")]


@pytest.mark.parametrize("name, backend", GUIDE_CASES)
def test_a_guide_pattern_runs_unchanged_with_keras_tuners_outcome(name, backend, tmp_path, store_url):
    reference = outcome(name, "keras_tuner", tmp_path / "kt", backend)
    assert reference["error"] is None and states(reference) == ["COMPLETE"] * PATTERNS[name].trials
    tuner = outcome(name, "search", tmp_path / "tuner", backend, store_url)
    assert tuner["error"] is None, tuner
    assert states(tuner) == states(reference)
    assert (tuner["objective"], tuner["direction"]) == (reference["objective"], reference["direction"])
    result, study = cli_outcome(name, tmp_path, backend, store_url.replace("store.db", "cli.db"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert [t.state.name for t in study.trials] == states(reference), \
        [t.user_attrs.get("fail_reason") for t in study.trials]
    assert study.direction.name.lower()[:3] == reference["direction"]
    objective = reference["objective"]
    for t in study.trials:  # the value is the objective as Keras Tuner scores it
        assert t.user_attrs["metrics"][objective] == pytest.approx(t.value)


def test_the_float_result_is_keras_tuners_default_objective_minimised(tmp_path, store_url):
    result, study = cli_outcome("fit_returns_float", tmp_path, "tensorflow", store_url)
    assert result.returncode == 0, result.stderr
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert "default_objective" in result.stdout
    # no epoch logs the objective: nothing stopped the fits, every epoch was recorded
    assert all(t.user_attrs["epochs"] == 2 for t in study.trials)


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_trial_error_fails_those_trials_and_the_search_goes_on(backend, tmp_path, store_url):
    for run in (outcome("failed_trial_error", "keras_tuner", tmp_path / "kt", backend),
                outcome("failed_trial_error", "search", tmp_path / "tuner", backend, store_url)):
        for state, units in zip(states(run), run["units"]):
            assert state == ("FAIL" if units > 64 else "COMPLETE"), run
    result, study = cli_outcome("failed_trial_error", tmp_path, backend, store_url.replace("store", "cli"))
    for t in study.trials:
        units = t.user_attrs["hp_values"]["units"]
        assert t.state == (TrialState.FAIL if units > 64 else TrialState.COMPLETE)
        if t.state == TrialState.FAIL:
            assert t.user_attrs["fail_reason"] == f"build: FailedTrialError: Model too large: {units} units"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fatal_error_stops_the_search_with_its_reason(backend, tmp_path, store_url):
    reference = outcome("fatal_error", "keras_tuner", tmp_path / "kt", backend)
    assert reference["error"] == "FatalError: this search cannot go on"
    tuner = outcome("fatal_error", "search", tmp_path / "tuner", backend, store_url)
    assert tuner["error"].startswith("StudyStopped: study 'fatal_error' stopped: trial ")
    assert tuner["error"].endswith("build: FatalError: this search cannot go on")
    result, study = cli_outcome("fatal_error", tmp_path, backend, store_url.replace("store", "cli"))
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "stopped" in lines[0] and "FatalError: this search cannot go on" in lines[0]
    trials = study.trials
    assert trials[-1].state == TrialState.FAIL and trials[-1].user_attrs["fatal"] is True
    assert all(t.user_attrs["hp_values"]["units"] == 32 for t in trials[:-1])  # no trial after it
    # the stop is stored: another worker refuses with the same reason, before any trial
    worker = run_cli("worker", "--study", "fatal_error", "--storage", store_url.replace("store", "cli"))
    assert worker.returncode != 0 and error_lines(worker) == lines
    assert len(optuna.load_study(study_name="fatal_error", storage=store_url.replace("store", "cli")).trials) \
        == len(trials)


def test_every_trial_failing_stops_after_keras_tuners_three_in_a_row(tmp_path, store_url):
    reference = outcome("always_fails", "keras_tuner", tmp_path / "kt", "tensorflow")
    assert reference["error"].startswith("RuntimeError: Number of consecutive failures exceeded the limit of 3")
    result, study = cli_outcome("always_fails", tmp_path, "tensorflow", store_url)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "3 trials failed in a row (--max-consecutive-failures 3" in lines[0], lines
    assert [t.state.name for t in study.trials] == states(reference) == ["FAIL"] * 3
    assert "fit: ValueError: no configuration trains" in lines[0]


def test_a_study_ending_with_no_completed_trial_exits_with_the_most_common_failure(tmp_path, store_url):
    space = tmp_path / "always_fails.py"
    space.write_text(PATTERNS["always_fails"].space_source())
    result = run_cli("start", str(space), "--storage", store_url, "--trials", "2", "--epochs", "1")
    assert result.returncode != 0
    lines = error_lines(result)
    assert lines == ["error: no trial of study 'always_fails' completed (2 failed); the most common reason (2 of 2): "
                     "fit: ValueError: no configuration trains"], lines


def test_xception_from_keras_tuner_applications_runs_on_the_digits(tmp_path, store_url):
    reference = outcome("hyper_xception", "keras_tuner", tmp_path / "kt", "tensorflow")
    result, study = cli_outcome("hyper_xception", tmp_path, "tensorflow", store_url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [t.state.name for t in study.trials] == states(reference) == ["COMPLETE"]
    assert study.trials[0].value > 0


@pytest.mark.parametrize("args, message", [
    (["--objective", "val_f1"], "--objective 'val_f1': the direction of an unknown metric cannot be inferred"),
    (["--objective", "val_loss", "--direction", "up"], "Invalid value for '--direction': 'up' is not one of"),
])
def test_bad_objective_options_are_one_line_and_store_nothing(tiny_space, store_url, args, message):
    result = run_cli("start", str(tiny_space), "--storage", store_url, *args)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0], result.stderr
    listing = run_cli("status", "--storage", store_url, "--format", "json")
    assert json.loads(listing.stdout or "[]") == []


def test_an_objective_the_model_never_logs_is_one_line_naming_what_it_logs(tiny_space, store_url):
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "2", "--epochs", "3",
                     "--objective", "val_f1", "--direction", "max")
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "the objective 'val_f1' is not among the metrics the model logs " \
           "(accuracy, loss, val_accuracy, val_loss)" in lines[0]
    trials = optuna.load_study(study_name="tiny", storage=store_url).trials
    assert all(t.user_attrs["epochs"] == 1 for t in trials)  # each stopped at its first epoch


def test_a_stored_objective_is_kept_and_a_resume_that_contradicts_it_is_refused(tiny_space, store_url):
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "1", "--epochs", "1",
                     "--objective", "val_loss")
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny", storage=store_url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.best_value == pytest.approx(study.trials[0].user_attrs["metrics"]["val_loss"])
    resumed = run_cli("start", str(tiny_space), "--storage", store_url, "--objective", "val_accuracy")
    assert resumed.returncode != 0 and "--objective val_loss" in error_lines(resumed)[0]


NOTEBOOK = textwrap.dedent('''
    import keras
    import numpy as np
    from sklearn.datasets import load_digits
    from keras_tuner import RandomSearch

    digits = load_digits()
    x = digits.images.astype("float32") / 16.0
    y = keras.utils.to_categorical(digits.target, 10)
    x_train, y_train, x_val, y_val = x[:1200], y[:1200], x[1200:], y[1200:]

    def build_model(hp):
        model = keras.Sequential([
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Int("units", 32, 128, step=32), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = RandomSearch(build_model, objective="val_accuracy", max_trials=3, directory="d",
                         project_name="p")
    tuner.search(x_train, y_train, epochs=2, validation_data=(x_val, y_val))
    best_model = tuner.get_best_models()[0]
    print("best", tuner.get_best_hyperparameters()[0].values, best_model.evaluate(x_val, y_val, verbose=0))
    tuner.results_summary()
''')


def test_a_keras_tuner_script_changes_its_import_only_and_gets_optuna_and_a_second_worker(tmp_path):
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK.replace("from keras_tuner import RandomSearch",
                                       "from search import Tuner as RandomSearch"))
    store_url = f"sqlite:///{tmp_path / 'search.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEARCH_STORAGE": store_url}
    ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "best {" in ran.stdout and "Results summary" in ran.stdout
    assert 'Objective(name="val_accuracy", direction="max")' in ran.stdout
    study = optuna.load_study(study_name="p", storage=store_url)  # a plain Optuna study
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    # More trials for the study (queued around the best), taken by a second process's worker,
    # which runs the stored script up to its tuner.search().
    queued = subprocess.run([sys.executable, "-m", "search", "ablate", "--study", "p", "--params", "units",
                             "--repeats", "1"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert queued.returncode == 0, queued.stderr[-2000:]
    worker = subprocess.Popen([sys.executable, "-m", "search", "worker", "--study", "p"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = worker.communicate(timeout=900)
    assert worker.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="p", storage=store_url).trials
    mine = [t for t in trials if t.user_attrs.get("worker", {}).get("pid") == worker.pid]
    assert mine and all(t.state == TrialState.COMPLETE for t in mine), [t.user_attrs for t in mine]
    assert f"ran {len(mine)} trials" in out
