"""Data sets from files in their real formats: CIFAR-100 pickles, .npz, image folders; class subsets,
fixed splits, the per-process cache shared by trials that differ in resize; offline messages."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from search import _datasets, data
from search.commands.start import prepare
from search.errors import DataError
from search.execution.worker import run_worker
from search.options import start_options
from tests.conftest import REPO, error_lines, run_cli

TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 2


def write_cifar100(folder, classes=100):
    """A small data set in CIFAR-100's published format: ``cifar-100-python/{train,test,meta}``,
    pickled dicts of 3072-byte rows (channel planes) and fine/coarse labels. Each image's red plane
    holds its fine label, so tests can check images and labels stay together."""
    root = folder / "cifar-100-python"
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        labels = rng.permutation(np.repeat(np.arange(classes), per_class))
        rows = rng.integers(0, 256, (len(labels), 3, 32 * 32), dtype=np.uint8)
        rows[:, 0, :] = labels[:, None]
        with open(root / split, "wb") as f:
            pickle.dump({b"data": rows.reshape(len(labels), 3072),
                         b"fine_labels": labels.tolist(),
                         b"coarse_labels": (labels // 5).tolist()}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(classes)]}, f)
    return root


@pytest.fixture(autouse=True)
def fresh_caches():
    _datasets._load.cache_clear()
    _datasets._subset.cache_clear()
    yield
    _datasets._load.cache_clear()
    _datasets._subset.cache_clear()


@pytest.fixture
def cifar(tmp_path):
    return str(write_cifar100(tmp_path))


def test_cifar100_folder_loads_with_fixed_seeded_splits(cifar):
    ds = _datasets.load(cifar, seed=3)
    n_train = 100 * TRAIN_PER_CLASS
    assert ds.num_classes == 100
    assert ds.x_train.shape[1:] == (32, 32, 3) and ds.x_train.dtype == np.uint8
    assert len(ds.x_val) == round(0.15 * n_train) and len(ds.x_train) + len(ds.x_val) == n_train
    assert len(ds.x_test) == 100 * TEST_PER_CLASS  # the data set's own test split, untouched
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert (x[..., 0].max(axis=(1, 2)) == y).all()  # channels last, images stay with labels
    assert set(np.unique(ds.y_val)) == set(range(100))  # stratified validation split
    again = _datasets._load.__wrapped__(cifar, 3, 0.15)
    assert np.array_equal(again.y_val, ds.y_val) and np.array_equal(again.x_train, ds.x_train)
    other = _datasets._load.__wrapped__(cifar, 4, 0.15)
    assert not np.array_equal(other.y_val, ds.y_val)


def test_class_subset_keeps_k_classes_remapped_and_their_images(cifar):
    ds = _datasets.load(cifar, seed=0)
    sub = data.subset(ds, 20)
    assert sub.num_classes == 20 and len(sub.classes) == 20
    assert list(sub.classes) == sorted(sub.classes)
    chosen = np.array(sub.classes)
    for x, y, full_y in ((sub.x_train, sub.y_train, ds.y_train), (sub.x_val, sub.y_val, ds.y_val),
                         (sub.x_test, sub.y_test, ds.y_test)):
        assert set(np.unique(y)) == set(range(20))  # only K labels, remapped to 0..K-1
        assert len(y) == np.isin(full_y, chosen).sum()  # every sample of those classes, no other
        assert (x[..., 0].max(axis=(1, 2)) == chosen[y]).all()  # label k is original class chosen[k]
    assert data.subset(ds, 20) is sub  # cached per process
    assert data.subset(ds, 40).classes != sub.classes


def test_class_subset_is_the_same_in_every_process_and_set_by_the_seed(cifar):
    here = data.subset(_datasets.load(cifar, seed=5), 20).classes
    code = textwrap.dedent(f"""
        from search import _datasets, data
        print(list(data.subset(_datasets.load({cifar!r}, seed=5), 20).classes))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(list(here))
    assert data.subset(_datasets.load(cifar, seed=6), 20).classes != here


def test_classes_larger_than_the_data_set_is_a_clear_error(cifar):
    with pytest.raises(DataError, match=r"classes=120 but .* has 100 classes \(use 2..100\)"):
        data.subset(_datasets.load(cifar), 120)


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


def test_npz_file_with_and_without_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 10, 10), dtype=np.uint8)
    y = np.arange(200) % 4
    np.savez(tmp_path / "two.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    np.savez(tmp_path / "one.npz", x_train=x, y_train=y.reshape(-1, 1))
    two = _datasets.load(str(tmp_path / "two.npz"))
    assert two.input_shape == (10, 10, 1) and len(two.x_test) == 40 and two.num_classes == 4
    assert len(two.x_train) + len(two.x_val) == 200
    one = _datasets.load(str(tmp_path / "one.npz"))
    assert len(one.x_test) == 40 and len(one.x_train) + len(one.x_val) == 160  # a seeded 20% test split
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(DataError, match="needs arrays x_train and y_train"):
        _datasets.load(str(tmp_path / "bad.npz"))


def test_image_folder_of_class_subfolders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for label, name in enumerate(["cat", "dog", "fox"]):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            pixels[..., 0] = label * 100
            Image.fromarray(pixels).save(tmp_path / "pets" / name / f"{i}.png")
    (tmp_path / "pets" / "notes.txt").write_text("not a class")
    ds = _datasets.load(str(tmp_path / "pets"))
    assert ds.num_classes == 3 and ds.input_shape == (12, 12, 3)
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 30
    assert (ds.x_train[..., 0].max(axis=(1, 2)) == ds.y_train * 100).all()  # sorted names -> labels


def test_unknown_data_names_and_formats(tmp_path):
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        _datasets.load("imagenet")
    with pytest.raises(DataError, match="does not exist"):
        _datasets.load(str(tmp_path / "missing.npz"))
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unknown data format"):
        _datasets.load(str(tmp_path / "table.csv"))


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
