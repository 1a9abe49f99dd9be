"""Data sets from files in their real formats: CIFAR-100 pickles, .npz, image folders; class subsets,
fixed splits, unknown names and formats (the cache shared by a study's trials and a Keras data set
offline: tests/e2e/test_data.py)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from search import _datasets, data
from search.errors import DataError
from search.testing.cli import REPO
from search.testing.datasets import TEST_PER_CLASS, TRAIN_PER_CLASS

pytestmark = pytest.mark.usefixtures("fresh_caches")  # tests/conftest.py; `cifar` too


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
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(list(here))
    assert data.subset(_datasets.load(cifar, seed=6), 20).classes != here


def test_classes_larger_than_the_data_set_is_a_clear_error(cifar):
    with pytest.raises(DataError, match=r"classes=120 but .* has 100 classes \(use 2..100\)"):
        data.subset(_datasets.load(cifar), 120)


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


def _npz_with(path, **arrays):
    base = {"x_train": np.zeros((40, 8, 8), dtype=np.uint8), "y_train": np.arange(40) % 4}
    base.update(arrays)
    np.savez(path, **base)
    return str(path)


@pytest.mark.parametrize("arrays, message", [
    ({"y_train": np.array(["cat", "dog"] * 20)}, "y_train holds labels that are not numbers ('cat', 'dog'"),
    ({"y_train": np.arange(40) % 3 - 1}, "y_train holds labels from -1 to 1: labels must be integers 0..K-1"),
    ({"y_train": np.full(40, np.nan)}, "y_train holds 40 NaN or infinite values (of 40, dtype float64)"),
    ({"y_train": np.arange(80).reshape(40, 2) % 5}, "y_train is an integer array of shape (40, 2) (dtype int64)"),
    ({"y_train": np.linspace(0, 1, 40), "x_test": np.zeros((4, 8, 8)), "y_test": np.arange(4)},
     "y_train holds regression targets (floats) but y_test class labels (dtype int64)"),
    ({"y_train": np.zeros(40, dtype=np.int64)}, "y_train has a single class (0): a classifier needs two"),
    ({"x_train": np.full((40, 8, 8), np.nan)}, "x_train holds 2560 NaN or infinite values (of 2560)"),
    ({"x_train": np.array([["a"] * 8] * 40)}, "x_train is not numeric (dtype <U1)"),
    ({"x_test": np.zeros((4, 8, 8)), "y_test": np.array([0, 1, -2, 3])}, "y_test holds labels from -2"),
])
def test_an_npz_whose_arrays_cannot_train_a_classifier_is_one_line(tmp_path, arrays, message):
    path = _npz_with(tmp_path / "data.npz", **arrays)
    with pytest.raises(DataError) as raised:
        _datasets.load(path)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_npz_with_float_labels_that_are_whole_numbers_loads(tmp_path):
    ds = _datasets.load(_npz_with(tmp_path / "data.npz", y_train=(np.arange(40) % 4).astype(float)))
    assert ds.num_classes == 4 and ds.y_train.dtype == np.int64


@pytest.mark.parametrize("targets", [
    np.random.default_rng(0).random((40, 1)),  # the keras-io guides' y = np.random.rand(n, 1)
    np.random.default_rng(0).random(40).astype(np.float32),
    np.random.default_rng(0).random((40, 3)),  # several outputs
])
def test_float_targets_are_regression_targets_kept_as_stored(tmp_path, targets):
    ds = _datasets.load(_npz_with(tmp_path / "data.npz", y_train=targets))
    assert ds.regression and ds.num_classes == 0
    assert ds.y_train.dtype == targets.dtype and ds.y_train.shape[1:] == targets.shape[1:]
    kept = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    assert len(kept) == 40 and np.allclose(np.sort(kept, axis=0), np.sort(targets, axis=0))
    assert "regression targets" in ds.summary() and "classes" not in ds.summary()
    with pytest.raises(DataError, match="holds regression targets"):
        _datasets.subset(ds, 2)


def test_one_hot_rows_and_a_column_of_integers_are_class_labels(tmp_path):
    labels = np.arange(40) % 4
    one_hot = _datasets.load(_npz_with(tmp_path / "a.npz", y_train=np.eye(4)[labels]))
    column = _datasets.load(_npz_with(tmp_path / "b.npz", y_train=labels.reshape(-1, 1)))
    for ds in (one_hot, column):
        assert not ds.regression and ds.num_classes == 4 and ds.y_train.dtype == np.int64


def test_raw_uint8_images_into_a_model_that_does_not_rescale_them_is_one_note():
    import keras

    ds = _datasets.load("digits")
    inputs = keras.Input(shape=ds.input_shape)
    bare = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    note = _datasets.unscaled_note(bare, ds)
    assert note.startswith("digits: the inputs are uint8 pixels 0..255") and "\n" not in note
    inner = keras.Sequential([keras.layers.Rescaling(1 / 255), keras.layers.Flatten()])
    nested = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    assert _datasets.unscaled_note(nested, ds) is None  # a Rescaling layer inside a nested model
    floats = _datasets.Dataset("f", ds.x_train.astype("float32"), ds.y_train, ds.x_val, ds.y_val,
                               ds.x_test, ds.y_test, ds.num_classes)
    assert _datasets.unscaled_note(bare, floats) is None


def test_no_unscaled_note_when_a_layer_on_the_way_may_rescale():
    import keras

    ds = _datasets.load("digits")
    inputs = keras.Input(shape=ds.input_shape)
    scaled_by_lambda = keras.Model(
        inputs, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x / 255)(inputs))))
    assert _datasets.unscaled_note(scaled_by_lambda, ds) is None
    scaled_by_op = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
        keras.ops.cast(inputs, "float32") / 255.0)))
    assert _datasets.unscaled_note(scaled_by_op, ds) is None
    augmented = keras.Sequential([keras.Input(shape=ds.input_shape),
                                  keras.Sequential([keras.layers.RandomFlip()]),
                                  keras.layers.Flatten(), keras.layers.Dense(2)])
    assert _datasets.unscaled_note(augmented, ds).startswith("digits: the inputs are")


def test_the_unscaled_note_is_given_once_a_process():
    import keras

    ds = _datasets.load("digits")
    model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    _datasets._said.clear()
    assert _datasets.UNSCALED in _datasets.unscaled_note_once(model, ds)  # search.logs.UNSCALED
    assert _datasets.unscaled_note_once(model, ds) is None
