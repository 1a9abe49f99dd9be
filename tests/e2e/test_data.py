"""Data sets in a real study: trials that differ in resize share the per-process cache of one load;
a Keras data set that cannot be downloaded fails the start in one line (the loading itself:
tests/unit/test__datasets.py)."""

import os
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from search import _datasets
from search.commands.start import prepare
from search.execution.worker import run_worker
from search.options import start_options
from search.testing.cli import error_lines, run_cli

pytestmark = pytest.mark.usefixtures("fresh_caches")  # tests/conftest.py; `cifar` too


RESIZE_SPACE = textwrap.dedent('''
    import keras
    from search import _datasets, data
    def build(hp):
        ds = data.current(classes=hp.Choice("classes", [20, 40]))
        inputs = keras.Input(shape=ds.input_shape)
        x = data.resize(keras.layers.Rescaling(1.0 / 255)(inputs), hp.Choice("resize", [8, 16]))
        x = keras.layers.Flatten()(x)
        model = keras.Model(inputs, keras.layers.Dense(ds.num_classes, activation="softmax")(x))
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
''')


def test_trials_with_different_resize_share_one_cached_load(cifar, tmp_path, store_url):
    space = tmp_path / "resize.py"
    space.write_text(RESIZE_SPACE)
    prepared = prepare(start_options(str(space), storage=store_url, trials=2, epochs=1, data=cifar,
                                    sampler="grid", fixed={"classes": "20"}))
    report = run_worker(store_url, prepared.study_name)
    assert report.trials == 2
    study = optuna.load_study(study_name="resize", storage=store_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert {t.params["resize"] for t in study.trials} == {8, 16}
    assert {t.user_attrs["hp_values"]["classes"] for t in study.trials} == {20}
    assert _datasets._load.cache_info().misses == 1  # one read of the files for the study and both trials
    assert _datasets._subset.cache_info().misses == 1  # one class subset, reused by both trials


def test_keras_dataset_offline_fails_the_start_with_one_line(tmp_path, tiny_space, store_url):
    # An empty Keras cache and a proxy nobody listens on: the download fails at once, as offline.
    env = {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9"}
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--data", "cifar100",
                     "--trials", "1", env=env, timeout=300)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "'cifar100' is not in ~/.keras/datasets" in lines[0] and "--data" in lines[0]
    assert not os.path.exists(store_url.removeprefix("sqlite:///")) or "tiny" not in run_cli(
        "status", "--storage", store_url).stdout


def test_a_shipped_space_offline_names_its_offline_command_and_stores_nothing(tmp_path):
    env = {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9"}
    store = tmp_path / "search.db"
    result = run_cli("start", "spaces/vgg.py", "--storage", f"sqlite:///{store}", env=env, timeout=300)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "could not be downloaded (" in lines[0] and "(Exception)" not in lines[0]
    assert lines[0].endswith("Without internet: search start spaces/vgg.py --data digits "
                             "--set weights=none --trials 2 --epochs 2"), lines[0]
    assert not store.exists()  # a start that failed created no store
