"""Checkpoints of the top trials (Optuna artifacts) and `search best`: top K, test-split evaluation,
export; a failing artifact store never costs a trial. Real training on digits, one-epoch trials run
by an in-process worker (the artifact store's settings: tests/unit/execution/test_checkpoints.py)."""

import errno
import json
import sqlite3
from types import SimpleNamespace

import keras
import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from search import _datasets, cli, data
from search.execution import checkpoints as artifacts
from search.execution.worker import run_worker
from search.storage import open_storage
from search.testing.studies import new_subset_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Trials train on a class subset chosen per trial (search.testing.spaces.SUBSET_SPACE), so
# evaluation must rebuild the same subset.
TRIALS, KEEP = 4, 2


def invoke(*args):
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def load(url):
    return optuna.load_study(study_name="space", storage=url)


def ranked(url):
    done = [t for t in load(url).get_trials() if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: (-t.value, t.number))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("best")
    url = new_subset_study(root, TRIALS, keep_best=KEEP)
    report = run_worker(url, "space")
    assert report.complete == TRIALS
    return SimpleNamespace(root=root, url=url, folder=root / "store-artifacts")


def test_only_the_top_k_checkpoints_are_kept(study):
    top = ranked(study.url)[:KEEP]
    files = sorted(p.name for p in study.folder.iterdir())
    assert len(files) == KEEP  # the store stays bounded: the others' weights were removed
    assert sorted(t.user_attrs["checkpoint"]["artifact_id"] for t in top) == files
    for t in top:
        assert t.user_attrs["checkpoint"]["state"] == "saved"
        assert t.user_attrs["checkpoint"]["epoch"] == t.user_attrs["best_epoch"]
    store = open_storage(study.url)
    kept = artifacts.Checkpoints.of(store, store.get_study_id_from_name("space"),
                                    SimpleNamespace(keep_best=KEEP, direction="max", artifacts=None))
    assert set(kept.artifact_ids()) == {t.number for t in top}


def test_best_evaluates_on_the_test_split_and_exports_loadable_models(study, tmp_path):
    export = tmp_path / "export"
    code, out, err = invoke("best", "--study", "space", "--storage", study.url, "--top", KEEP + 1,
                            "--evaluate", "--export", export)
    assert code == 0, err
    top = ranked(study.url)  # reloaded: test metrics are recorded on the trials
    full = _datasets.load("digits", 0)
    assert f"trial {top[KEEP].number}: no checkpoint" in out and "not kept" in out
    for t in top[:KEEP]:
        hp = t.user_attrs["hp_values"]
        split = data.subset(full, hp["classes"])  # the trial's classes, the held-out test split
        assert t.user_attrs["test_samples"] == len(split.x_test) < len(full.x_train)
        model = keras.saving.load_model(export / f"trial_{t.number}.keras")
        direct = model.evaluate(split.x_test, split.y_test, return_dict=True, verbose=0)
        assert t.user_attrs["test_metrics"]["accuracy"] == pytest.approx(direct["accuracy"], abs=1e-6)
        # the exported weights are the trained ones: they score the trial's validation value again
        val = model.evaluate(split.x_val, split.y_val, return_dict=True, verbose=0)
        assert val["accuracy"] == pytest.approx(t.value, abs=1e-6)
        info = json.loads((export / f"trial_{t.number}.json").read_text())
        assert info["params"] == hp and info["value"] == t.value
        assert info["test_metrics"] == t.user_attrs["test_metrics"]
        assert info["num_classes"] == hp["classes"] == len(info["classes"] or range(10))
    assert "test_metrics" not in top[KEEP].user_attrs
    assert not (export / f"trial_{top[KEEP].number}.keras").exists()


def test_best_json_lists_the_top_trials(study):
    code, out, err = invoke("best", "--study", "space", "--storage", study.url, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert [t["number"] for t in result["trials"]] == [t.number for t in ranked(study.url)[:KEEP]]
    assert all(t["checkpoint"] == "saved" for t in result["trials"])


def test_a_failing_artifact_store_leaves_the_trials_complete(tmp_path, monkeypatch):
    def full_disk(self, artifact_id, body):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts._FolderStore, "write", full_disk)
    url = new_subset_study(tmp_path, 2, keep_best=KEEP)
    report = run_worker(url, "space")
    assert report.complete == 2 and report.failed == 0  # the worker went on to the next trial
    for t in load(url).get_trials():
        assert t.state == TrialState.COMPLETE and t.value is not None
        checkpoint = t.user_attrs["checkpoint"]
        assert checkpoint["state"] == "missing" and "No space left on device" in checkpoint["reason"]
    code, out, err = invoke("best", "--study", "space", "--storage", url, "--evaluate")
    assert code != 0 and "has a kept checkpoint" in err and len(err.strip().splitlines()) == 1
    code, out, err = invoke("best", "--study", "space", "--storage", url)
    assert code == 0 and "missing" in out


def test_evaluate_finds_a_moved_store_out_in_one_line(study, tmp_path):
    moved = tmp_path / "moved.db"
    with sqlite3.connect(study.root / "store.db") as source, sqlite3.connect(moved) as copy:
        source.backup(copy)  # the study without its artifact folder beside it
    code, _, err = invoke("best", "--study", "space", "--storage", f"sqlite:///{moved}", "--evaluate")
    note, error = err.strip().splitlines()  # the stored source ran (the model was rebuilt) first
    assert note.startswith(f"note: running the space source stored in sqlite:///{moved} ")
    assert code != 0 and "is not in the artifact store" in error
