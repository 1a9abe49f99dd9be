"""Whole studies through the CLI, as a user runs them: real training on digits, real SQLite store."""

import json
import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from search.testing.cli import REPO, error_lines, run_cli

pytestmark = pytest.mark.slow


def load(store_url, name):
    return optuna.load_study(study_name=name, storage=store_url)


def test_cnn_study_on_digits_scores_well_and_is_plain_optuna(store_url):
    result = run_cli("start", "spaces/cnn.py", "--storage", store_url, "--trials", "4", "--epochs", "5")
    assert result.returncode == 0, result.stderr
    assert "Best trial" in result.stdout and "4 of 4 trials finished" in result.stdout
    study = load(store_url, "cnn")  # plain optuna reads the store
    trials = study.trials
    assert len(trials) == 4
    assert trials[0].user_attrs.get("baseline") is True  # the space's defaults run first
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert finished, [t.user_attrs.get("fail_reason") for t in trials]
    assert study.best_value > 0.85
    best = study.best_trial
    attrs = best.user_attrs
    assert len(attrs["history"]["val_accuracy"]) == attrs["epochs"] <= 5
    assert attrs["metrics"]["val_accuracy"] == pytest.approx(best.value)
    assert max(attrs["history"]["val_accuracy"]) == pytest.approx(best.value)
    assert attrs["trainable_params"] > 0 and attrs["ms_per_step"] > 0 and attrs["train_seconds"] > 0
    assert len(attrs["epoch_times"]) == attrs["epochs"] and all(e["steps"] > 0 for e in attrs["epoch_times"])
    assert {"learning_rate", "optimizer", "batch_size"} <= set(attrs["hp_values"])


def test_two_workers_spend_exactly_the_budget(tiny_space, store_url):
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "5", "--epochs", "2",
                     "--workers", "2")
    assert result.returncode == 0, result.stderr
    trials = load(store_url, "tiny").trials
    assert len(trials) == 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    pids = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(pids) == 2


def test_jax_backend_runs_a_study(tiny_space, store_url):
    pytest.importorskip("jax")
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "2", "--epochs", "2",
                     env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr
    trials = load(store_url, "tiny").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.user_attrs for t in trials]


def test_resume_adds_trials_up_to_the_budget(tiny_space, store_url):
    assert run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "2",
                   "--epochs", "1").returncode == 0
    first = [(t.number, t.value) for t in load(store_url, "tiny").trials]
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "3")
    assert result.returncode == 0, result.stderr
    assert "Resuming study" in result.stdout
    trials = load(store_url, "tiny").trials
    assert len(trials) == 3
    assert [(t.number, t.value) for t in trials[:2]] == first  # nothing completed is touched
    # the same budget again: nothing more to run
    assert run_cli("start", str(tiny_space), "--storage", store_url).returncode == 0
    assert len(load(store_url, "tiny").trials) == 3


def test_resume_with_changed_space_is_refused_and_touches_nothing(tiny_space, store_url):
    assert run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "1",
                   "--epochs", "1").returncode == 0
    before = [(t.number, t.state, t.value) for t in load(store_url, "tiny").trials]
    tiny_space.write_text(tiny_space.read_text() + "\n# changed\n")
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "3")
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "different source" in lines[0], result.stderr
    assert [(t.number, t.state, t.value) for t in load(store_url, "tiny").trials] == before


def test_resume_with_contradicting_option_is_refused(tiny_space, store_url):
    assert run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "1",
                   "--epochs", "1").returncode == 0
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--epochs", "3")
    assert result.returncode != 0
    assert "--epochs 1" in error_lines(result)[0]


def test_set_fixes_a_hyperparameter(tiny_space, store_url):
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "3", "--epochs", "1",
                     "--set", "batch_size=64", "--set", "units=32")
    assert result.returncode == 0, result.stderr
    for t in load(store_url, "tiny").trials:
        assert t.user_attrs["hp_values"]["batch_size"] == 64
        assert t.user_attrs["hp_values"]["units"] == 32
        assert "batch_size" not in t.params and "units" not in t.params and "lr" in t.params


@pytest.mark.parametrize("setting, message", [
    ("nope=3", "defines no hyperparameter 'nope'"),
    ("batch_size=48", "not one of the choices"),
    ("units=1000", "outside the range"),
    ("units", "expected NAME=VALUE"),
])
def test_bad_set_is_one_line_and_creates_nothing(tiny_space, store_url, setting, message):
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--set", setting)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0], result.stderr
    listing = run_cli("status", "--storage", store_url, "--format", "json")
    assert json.loads(listing.stdout) == []


def test_a_failing_configuration_fails_its_trial_only(tmp_path, store_url):
    space = tmp_path / "fragile.py"
    space.write_text(textwrap.dedent('''
        import keras
        from search import data
        def build(hp):
            ds = data.current()
            if hp.Choice("mode", ["ok", "boom"]) == "boom":
                raise ValueError("this configuration cannot be built")
            model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                                      keras.layers.Dense(ds.num_classes, activation="softmax")])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
    '''))
    result = run_cli("start", str(space), "--storage", store_url, "--trials", "2", "--epochs", "1",
                     "--sampler", "grid")
    assert result.returncode == 0, result.stderr
    by_mode = {t.user_attrs["hp_values"]["mode"]: t for t in load(store_url, "fragile").trials}
    assert by_mode["ok"].state == TrialState.COMPLETE
    assert by_mode["boom"].state == TrialState.FAIL
    assert by_mode["boom"].user_attrs["fail_reason"] == "build: ValueError: this configuration cannot be built"
    assert "ValueError" in result.stdout  # the reason is shown in the final table


def test_status_lists_studies_and_one_study(tiny_space, store_url):
    assert run_cli("start", str(tiny_space), "--storage", store_url, "--trials", "2",
                   "--epochs", "1").returncode == 0
    listing = json.loads(run_cli("status", "--storage", store_url, "--format", "json").stdout)
    assert [s["study"] for s in listing] == ["tiny"]
    one = json.loads(run_cli("status", "--study", "tiny", "--storage", store_url, "--format", "json").stdout)
    assert one["budget"] == 2 and sum(one["states"].values()) == 2
    assert one["best"]["value"] == max(t["value"] for t in one["trials"] if t["state"] == "COMPLETE")
    text = run_cli("status", "--study", "tiny", "--storage", store_url)
    assert "2 of 2 trials finished" in text.stdout and "Best trial" in text.stdout
    env_url = run_cli("status", env={"SEARCH_STORAGE": store_url})  # the store named by the variable
    assert "tiny" in env_url.stdout
    code = textwrap.dedent(f"""
        import sys
        from search.cli import main
        try:
            main(["status", "--study", "tiny", "--storage", {store_url!r}])
        except SystemExit as exc:
            print("EXIT", exc.code)
        print("KERAS", "keras" in sys.modules)
    """)
    quick = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                           timeout=120, check=False)
    assert "EXIT 0" in quick.stdout and "2 of 2 trials finished" in quick.stdout, quick.stderr
    assert "KERAS False" in quick.stdout  # status reads the store only: no backend import


@pytest.mark.parametrize("args, message", [
    (["start", "spaces/missing.py"], "does not exist"),
    (["start", "README.md"], "not a Python file"),
    (["start", "spaces/cnn.py", "--trials", "0"], "--trials must be at least 1"),
    (["status", "--study", "nope"], "no study named 'nope'"),
    (["worker", "--study", "nope"], "no study named 'nope'"),
    (["start", "spaces/cnn.py", "--data", "missing.npz"], "does not exist"),
    (["start", "spaces/cnn.py", "--data", "imagenet21k"], "unknown data set"),
])
def test_bad_input_is_one_line(store_url, args, message):
    result = run_cli(*args, "--storage", store_url)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_malformed_storage_url_is_one_line():
    result = run_cli("status", "--storage", "notaurl")
    assert result.returncode != 0
    assert "malformed storage URL" in error_lines(result)[0]


def test_default_storage_is_search_db_in_the_working_directory(tiny_space, tmp_path):
    result = run_cli("start", str(tiny_space), "--trials", "1", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(tmp_path / "search.db")
    assert len(load(f"sqlite:///{tmp_path / 'search.db'}", "tiny").trials) == 1


def test_two_simultaneous_starts_of_a_new_study_make_one_study_and_both_work_on_it(tiny_space,
                                                                                    store_url):
    """Started at once, both find no study and create it; the one whose record lands second
    joins the first's study as a resume would, and both run workers on it to the budget."""
    from search.testing.cli import popen_cli
    from search.testing.studies import retry_history

    args = ("start", str(tiny_space), "--storage", store_url, "--trials", "4", "--epochs", "1",
            "--workers", "1", "--pruner", "none")
    procs = [popen_cli(*args) for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    assert sorted(out.startswith("Resuming") for out, _ in outputs) == [False, True], outputs
    assert [s.study_name for s in optuna.get_all_study_summaries(store_url)] == ["tiny"]
    trials = load(store_url, "tiny").trials
    superseded = {n for t in trials for n in retry_history(t)}
    counted = [t for t in trials if t.number not in superseded]
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    assert sum(1 for t in trials if t.user_attrs.get("baseline")) == 1
