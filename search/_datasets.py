"""Data sets behind ``search.data``: named sets and files, split once per study, cached per process.

Splits are fixed by the study's seed: the held-out test split (the data set's own, or a seeded
stratified 20% where it has none) is never seen by the search; the validation split is a seeded
stratified fraction (15% by default) of the training data. Every worker computes the same splits.
Images are kept as uint8 (one copy); spaces normalise inside the model (``layers.Rescaling``),
and :func:`warn_if_unscaled` says once when a model does not. Targets arrive as stored
(:func:`_checked_targets`): integer labels are classes, float targets a regression (kept with
their dtype and shape, split without stratifying, ``num_classes`` 0).

Data sets by name: ``digits`` (scikit-learn's bundled digits, no download), ``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100`` (through ``keras.datasets``, cached under
``~/.keras/datasets``), or a path: an ``.npz`` file (``x_train, y_train[, x_test, y_test]``), a
CIFAR folder as published (``cifar-100-python`` with ``train``/``test``, or ``cifar-10-batches-py``),
or a folder of class sub-folders of images.

The process's active data set (:func:`activate`, set by the runner for each trial) and the one
the trial's ``build`` selected (:func:`select`, :func:`in_use`) live here, one per process.
"""

from __future__ import annotations

import functools
import logging
import os
import typing
from dataclasses import dataclass

import numpy as np

from search.errors import DataError, DownloadError
from search.logs import UNSCALED

DEFAULT_DATA = "digits"
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.2
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
CACHED_SUBSETS = 4  # class subsets kept per worker process (the full set is kept as well)


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int  # 0: regression targets (``y_*`` are floats, as stored)
    seed: int = 0
    classes: tuple[int, ...] | None = None  # the original labels of a class subset, in label order

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def regression(self) -> bool:
        """The targets are floats (regression), not class labels."""
        return is_regression(self.y_train)

    def summary(self) -> str:
        subset = f" (subset of {len(self.classes)} classes)" if self.classes else ""
        if self.regression:
            targets = f"regression targets {self.y_train.dtype} {tuple(self.y_train.shape[1:])}"
        else:
            targets = f"{self.num_classes} classes{subset}"
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / "
            f"{len(self.x_test)} test, input {self.input_shape}, {targets}"
        )


_base: Dataset | None = None  # the study's data set, activated by the runner for each trial
_in_use: Dataset | None = None  # what the trial's build() asked for (a class subset or the base)


def activate(dataset: Dataset) -> None:
    """Make ``dataset`` the one the next trial builds and trains on."""
    global _base, _in_use
    _base = _in_use = dataset


def select(classes: int | None = None) -> Dataset:
    """The active data set, or a subset of ``classes`` of its classes; what the trial trains on."""
    global _in_use
    if _base is None:
        raise DataError("no data set is active: search.data.current() is only valid inside a trial")
    _in_use = _base if classes is None else subset(_base, int(classes))
    return _in_use


def in_use() -> Dataset:
    """The data set the trial's ``build`` selected (the runner fits on it)."""
    if _in_use is None:
        raise DataError("no data set is active")
    return _in_use


def subset(dataset: Dataset, classes: int) -> Dataset:
    """``dataset`` restricted to ``classes`` classes chosen by its seed (cached per process)."""
    if classes == dataset.num_classes and dataset.classes is None:
        return dataset
    if dataset.regression:
        raise DataError(f"classes={classes} but {dataset.name} holds regression targets "
                        f"({dataset.y_train.dtype}), not classes")
    if dataset.classes is not None:
        raise DataError(f"{dataset.name}: a class subset cannot be subset again")
    if not 2 <= classes <= dataset.num_classes:
        raise DataError(f"classes={classes} but {dataset.name} has {dataset.num_classes} classes "
                        f"(use 2..{dataset.num_classes})")
    return _subset(dataset.name, dataset.seed, _val_fraction(dataset), classes)



# Layers that pass pixel values on unchanged in scale: the inputs reach the first weighted layer
# through these as raw 0..255 values. Any other layer (a Lambda, an op, a custom layer) may rescale,
# so the note is given only when the path to the first weighted layer is made of these alone.
_VALUE_KEEPING = ("InputLayer", "Reshape", "Flatten", "Permute", "Dropout", "SpatialDropout1D",
                  "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "Cropping1D", "Cropping2D",
                  "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Resizing",
                  "CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation", "RandomTranslation",
                  "RandomZoom", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
                  "AveragePooling2D", "AveragePooling3D", "UpSampling1D", "UpSampling2D", "UpSampling3D")
_SCALING = ("Rescaling", "Normalization", "BatchNormalization", "LayerNormalization",
            "GroupNormalization", "UnitNormalization")


def _path_to_weights(model) -> str:
    """What the model's inputs meet first beyond value-keeping layers: "weights" (a Keras layer
    that computes on the values, Dense, Conv and the like, built or not yet), "scaled" (a scaling layer), "unknown" (a layer that may rescale), or "through"
    (none of them: every layer keeps values, as an augmentation block does)."""
    from keras import Model
    from keras.layers import Layer

    # A functional model's operations include the ops (``keras.ops``) applied between its layers.
    for layer in getattr(model, "operations", None) or getattr(model, "layers", []):
        name = type(layer).__name__
        if name in _SCALING:
            return "scaled"
        if isinstance(layer, Model):
            inner = _path_to_weights(layer)
            if inner != "through":
                return inner
            continue
        if name in _VALUE_KEEPING:
            continue
        if (isinstance(layer, Layer) and type(layer).__module__.startswith("keras.")
                and name not in ("Lambda", "Activation")):
            return "weights"  # a Keras layer that computes on the values (built or not yet)
        return "unknown"  # a Lambda, an op or a custom layer: it may rescale, so say nothing
    return "through"


def unscaled_note(model, dataset: Dataset) -> str | None:
    """One line when ``dataset`` holds raw 0..255 uint8 images and they reach ``model``'s first
    weighted layer (Dense, Conv, ...) through layers that keep their values (nested models
    included): the model would train on raw pixel values. None otherwise, and None whenever a
    layer on the way may rescale (``Rescaling``, ``Normalization``, a Lambda, a custom layer)."""
    if dataset.x_train.dtype != np.uint8 or _path_to_weights(model) != "weights":
        return None
    return (f"{dataset.name}: the inputs are {UNSCALED} and the model has no Rescaling or "
            "Normalization layer: it trains on raw values; add keras.layers.Rescaling(1 / 255) "
            "after its Input")


_log = logging.getLogger("search.data")
_said: set[str] = set()  # the notes this process gave already: one line, not one a trial


def unscaled_note_once(model, dataset: Dataset) -> str | None:
    """:func:`unscaled_note`, the first time this process meets it; None after."""
    note = unscaled_note(model, dataset)
    if note is None or note in _said:
        return None
    _said.add(note)
    return note


def warn_if_unscaled(model, dataset: Dataset) -> None:
    """Log :func:`unscaled_note` as a warning, once per process (a worker's log when a trial
    builds; ``search start`` prints it as a note when the space is discovered)."""
    note = unscaled_note_once(model, dataset)
    if note:
        _log.warning(note)


def _val_fraction(dataset: Dataset) -> float:
    return round(len(dataset.x_val) / (len(dataset.x_train) + len(dataset.x_val)), 2)


@functools.lru_cache(maxsize=CACHED_SUBSETS)
def _subset(name: str, seed: int, val_fraction: float, classes: int) -> Dataset:
    full = _load(name, seed, val_fraction)
    chosen = np.sort(np.random.default_rng(seed).choice(full.num_classes, classes, replace=False))
    relabel = np.full(full.num_classes, -1, dtype=np.int64)
    relabel[chosen] = np.arange(classes)

    def pick(x, y):
        keep = relabel[y] >= 0
        return x[keep], relabel[y[keep]]

    x_train, y_train = pick(full.x_train, full.y_train)
    x_val, y_val = pick(full.x_val, full.y_val)
    x_test, y_test = pick(full.x_test, full.y_test)
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, classes, seed,
                   tuple(int(c) for c in chosen))


def _as_images(x: np.ndarray) -> np.ndarray:
    """Add a channel axis to grey images (N, H, W) -> (N, H, W, 1)."""
    return x[..., np.newaxis] if x.ndim == 3 else x


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel intensities are 0..16: scale to the uint8 range every image data set uses.
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return x, bunch.target.astype(np.int64), None, None


def _npz(path: str):
    import zipfile

    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle: never for data files
        raise DataError(f"{path}: not an .npz file (not a zip archive): save the arrays with "
                        "numpy.savez(path, x_train=..., y_train=...)")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x_train" not in f or "y_train" not in f:
                raise DataError(f"{path}: an .npz data file needs arrays x_train and y_train "
                                f"(found {', '.join(f.files) or 'none'})")
            if "x_val" in f and "y_val" in f:  # the splits as given (search.Tuner writes these)
                return _Given(*(f[k] if k in f else None for k in _Given._fields))
            x_test = f["x_test"] if "x_test" in f else None
            y_test = f["y_test"] if "y_test" in f else None
            return f["x_train"], f["y_train"], x_test, y_test
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: not a readable .npz file ({first})") from None


def _keras_dataset(name: str):
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # download failures surface as many exception types
        raise DownloadError(
            f"data set {name!r} is not in ~/.keras/datasets and could not be downloaded "
            f"({_reason(exc)}); point --data at a local copy (an .npz file, the "
            f"extracted CIFAR folder or a folder of class sub-folders)"
        ) from None
    return x_train, y_train, x_test, y_test


def _reason(exc: BaseException) -> str:
    """Why a download failed, in a few words: Keras' ``URL fetch failure on URL: code -- reason``
    keeps its reason; anything else its first line."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = text.rpartition(" -- ")[2] if " -- " in text else text
    return reason[:120]


def _cifar_folder(path: str):
    """A CIFAR folder as published: cifar-100-python (train, test) or cifar-10-batches-py."""
    from keras.src.datasets.cifar import load_batch

    def channels_last(x):
        return np.asarray(x).transpose(0, 2, 3, 1)

    try:
        if os.path.isfile(os.path.join(path, "train")):  # CIFAR-100
            x_train, y_train = load_batch(os.path.join(path, "train"), label_key="fine_labels")
            x_test, y_test = load_batch(os.path.join(path, "test"), label_key="fine_labels")
        else:  # CIFAR-10
            batches = [load_batch(os.path.join(path, f"data_batch_{i}")) for i in range(1, 6)]
            x_train = np.concatenate([b[0] for b in batches])
            y_train = np.concatenate([np.asarray(b[1]) for b in batches])
            x_test, y_test = load_batch(os.path.join(path, "test_batch"))
    except Exception as exc:
        raise DataError(f"{path}: not a readable CIFAR folder ({type(exc).__name__}: {exc})") from None
    return channels_last(x_train), np.asarray(y_train), channels_last(x_test), np.asarray(y_test)


def _is_cifar_folder(path: str) -> bool:
    names = set(os.listdir(path))
    return {"train", "test"} <= names or {"data_batch_1", "test_batch"} <= names


def _image_folder(path: str):
    """A folder of class sub-folders of images (sorted class names are labels 0..K-1). Images are
    read at the size of the first one; the model's resize handles the rest."""
    from keras.utils import img_to_array, load_img

    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    files = [(os.path.join(path, c, f), label) for label, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(path, c))) if f.lower().endswith(IMAGE_SUFFIXES)]
    if len(classes) < 2 or not files:
        raise DataError(f"{path}: a data folder needs at least two class sub-folders of images "
                        f"({', '.join(IMAGE_SUFFIXES)})")
    try:
        first = load_img(files[0][0])
        mode = "grayscale" if first.mode in ("L", "1") else "rgb"
        size = (first.height, first.width)
        x = np.stack([img_to_array(load_img(f, color_mode=mode, target_size=size), dtype="uint8")
                      for f, _ in files])
    except Exception as exc:
        raise DataError(f"{path}: cannot read its images ({type(exc).__name__}: {exc})") from None
    return x, np.array([label for _, label in files], dtype=np.int64), None, None


def _read(name: str):
    if name == "digits":
        return _digits()
    if name in KERAS_DATASETS:
        return _keras_dataset(name)
    if name.endswith(".npz"):
        if not os.path.isfile(name):
            raise DataError(f"data file {name} does not exist")
        return _npz(name)
    if os.path.isdir(name):
        return _cifar_folder(name) if _is_cifar_folder(name) else _image_folder(name)
    if os.path.exists(name):
        raise DataError(f"{name}: unknown data format (expected an .npz file or a folder)")
    known = ", ".join(("digits",) + KERAS_DATASETS)
    raise DataError(f"unknown data set {name!r}: use one of {known}, a path to an .npz file or a folder")


def _split(x, y, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    if is_regression(y):  # regression targets: a seeded split, nothing to stratify on
        return train_test_split(x, y, test_size=fraction, random_state=seed)
    _, counts = np.unique(y, return_counts=True)
    held_out = int(np.ceil(fraction * len(y)))
    # Stratify where each side of the split can hold every class at least once.
    can_stratify = counts.min() >= 2 and len(counts) <= min(held_out, len(y) - held_out)
    stratify = y if can_stratify else None
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)


class _Given(typing.NamedTuple):
    """An .npz file with its own validation split: used as given, labels as they are (integers,
    one-hot rows or regression targets), nothing held out that the file does not hold out."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def _num_classes(*ys: np.ndarray) -> int:
    """Classes of integer labels (max + 1) or one-hot rows (their width); 0 for other targets."""
    ys = [y for y in ys if y is not None and len(y)]
    if not ys:
        return 0
    if all(y.ndim == 2 and y.shape[1] > 1 for y in ys):
        return int(ys[0].shape[1])
    if all(y.ndim == 1 and np.issubdtype(y.dtype, np.integer) for y in ys):
        return int(max(y.max() for y in ys)) + 1
    return 0


def _as_given(name: str, given: _Given, seed: int) -> Dataset:
    x_test = given.x_test if given.x_test is not None else given.x_train[:0]
    y_test = given.y_test if given.y_test is not None else given.y_train[:0]
    return Dataset(name=name, x_train=given.x_train, y_train=given.y_train, x_val=given.x_val,
                   y_val=given.y_val, x_test=x_test, y_test=y_test,
                   num_classes=_num_classes(given.y_train, given.y_val), seed=seed)


def load(name: str = DEFAULT_DATA, seed: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION) -> Dataset:
    """Load and split a data set; cached per process, so trials of a worker share one copy."""
    return _load(name, int(seed), float(val_fraction))  # one cache key however it is called


def _checked_inputs(name: str, part: str, x) -> np.ndarray:
    """Inputs a model can train on: numbers, every one finite."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name}: {part} is not numeric (dtype {x.dtype}): inputs must be numbers, "
                        "e.g. uint8 pixels")
    if x.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise DataError(f"{name}: {part} holds {bad} NaN or infinite values (of {x.size}): "
                            "every trial would diverge; clean or impute them first")
    return _as_images(x)


LABELS_FIX = "labels must be integers 0..K-1 (numpy.unique(y, return_inverse=True)[1] maps any labels so)"


def _one_hot_rows(y: np.ndarray) -> bool:
    return y.ndim == 2 and y.shape[1] > 1 and bool(np.all((y == 0) | (y == 1))) \
        and bool(np.all(y.sum(axis=1) == 1))


def _checked_targets(name: str, part: str, y, regression: bool = False) -> np.ndarray:
    """The targets as stored, or one line naming the file and the dtype where they cannot be used:

    - integer (or bool) labels, a column ``(N, 1)`` of them, or float labels that are all whole
      numbers: class labels, as integers 0..K-1;
    - one-hot rows ``(N, K)``: their class labels (a model compiled with a categorical loss gets
      them one-hot again, ``search.space.labels``);
    - any other float array (any float array where ``regression``: the test targets of a
      regression set): regression targets, kept as they are (dtype and shape).
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in np.unique(y)[:3])
        raise DataError(f"{name}: {part} holds labels that are not numbers ({shown}, ...): "
                        f"{LABELS_FIX}; its dtype is {y.dtype}")
    if _one_hot_rows(y):
        return np.argmax(y, axis=1).astype(np.int64)
    column = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)
    if y.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(y)))
        if bad:
            raise DataError(f"{name}: {part} holds {bad} NaN or infinite values (of {y.size}, dtype "
                            f"{y.dtype}): every trial would diverge; clean or impute them first")
        if regression or not column or np.any(y != np.round(y)):
            return y  # regression targets, as stored
    elif not column:
        raise DataError(f"{name}: {part} is an integer array of shape {y.shape} (dtype {y.dtype}) "
                        "that is neither class labels nor one-hot rows: store regression targets "
                        "as floats, labels as one integer per sample")
    y = y.reshape(-1).astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{name}: {part} holds labels from {y.min()} to {y.max()}: {LABELS_FIX}")
    return y


def is_regression(y: np.ndarray) -> bool:
    """Whether ``y`` holds regression targets (floats) rather than class labels (integers)."""
    return y.dtype.kind == "f"


@functools.lru_cache(maxsize=2)
def _load(name: str, seed: int, val_fraction: float) -> Dataset:
    read = _read(name)
    if isinstance(read, _Given):
        return _as_given(name, read, seed)
    x, y, x_test, y_test = read
    x = _checked_inputs(name, "x_train", x)
    y = _checked_targets(name, "y_train", y)
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} inputs but {len(y)} labels")
    regression = is_regression(y)
    if not regression:
        classes = np.unique(y)
        if len(classes) < 2:
            raise DataError(f"{name}: y_train has a single class ({', '.join(map(str, classes)) or 'none'}): "
                            "a classifier needs two or more")
    if x_test is None:
        x, x_test, y, y_test = _split(x, y, DEFAULT_TEST_FRACTION, seed)
    else:
        x_test = _checked_inputs(name, "x_test", x_test)
        y_test = _checked_targets(name, "y_test", y_test, regression)
        if is_regression(y_test) != regression:
            kinds = {True: "regression targets (floats)", False: "class labels"}
            raise DataError(f"{name}: y_train holds {kinds[regression]} but y_test "
                            f"{kinds[not regression]} (dtype {y_test.dtype})")
    x_train, x_val, y_train, y_val = _split(x, y, val_fraction, seed + 1)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=0 if regression else int(max(y.max(), y_test.max())) + 1,
        seed=seed,
    )
