"""Data a space trains on: named data sets and files, split once per study, cached per process.

Public helpers for space modules: :func:`current` (the data set the trial trains on: input shape,
number of classes) and :class:`Dataset`.

Splits are fixed by the study's seed: the held-out test split (the data set's own, or a seeded
stratified 20% where it has none) is never seen by the search; the validation split is a seeded
stratified fraction (15% by default) of the training data. Every worker computes the same splits.
Images are kept as uint8 (one copy); spaces normalise inside the model (``layers.Rescaling``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from search.errors import DataError

DEFAULT_DATA = "digits"
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.2
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / "
            f"{len(self.x_test)} test, input {self.input_shape}, {self.num_classes} classes"
        )


_current: Dataset | None = None


def current() -> Dataset:
    """The data set of the trial being built (for a space's ``build(hp)``)."""
    if _current is None:
        raise DataError("no data set is active: search.data.current() is only valid inside a trial")
    return _current


def activate(dataset: Dataset) -> None:
    global _current
    _current = dataset


def _as_images(x: np.ndarray) -> np.ndarray:
    """Add a channel axis to grey images (N, H, W) -> (N, H, W, 1)."""
    return x[..., np.newaxis] if x.ndim == 3 else x


def _digits() -> tuple[np.ndarray, np.ndarray, None, None]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel intensities are 0..16: scale to the uint8 range every image data set uses.
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return x, bunch.target.astype(np.int64), None, None


def _npz(path: str):
    try:
        with np.load(path) as f:
            if "x_train" not in f or "y_train" not in f:
                raise DataError(f"{path}: an .npz data file needs arrays x_train and y_train "
                                f"(found {', '.join(f.files) or 'none'})")
            x_test = f["x_test"] if "x_test" in f else None
            y_test = f["y_test"] if "y_test" in f else None
            return f["x_train"], f["y_train"], x_test, y_test
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _keras_dataset(name: str):
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # download failures surface as many exception types
        raise DataError(
            f"data set {name!r} is not in ~/.keras/datasets and could not be downloaded "
            f"({type(exc).__name__}); point --data at a local .npz copy"
        ) from None
    return x_train, y_train, x_test, y_test


def _read(name: str):
    if name == "digits":
        return _digits()
    if name in KERAS_DATASETS:
        return _keras_dataset(name)
    if name.endswith(".npz"):
        if not os.path.isfile(name):
            raise DataError(f"data file {name} does not exist")
        return _npz(name)
    if os.path.exists(name):
        raise DataError(f"{name}: unknown data format (expected an .npz file)")
    known = ", ".join(("digits",) + KERAS_DATASETS)
    raise DataError(f"unknown data set {name!r}: use one of {known} or a path to an .npz file")


def _split(x, y, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 else None
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)


@functools.lru_cache(maxsize=4)
def load(name: str = DEFAULT_DATA, seed: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION) -> Dataset:
    """Load and split a data set; cached per process, so trials of a worker share one copy."""
    x, y, x_test, y_test = _read(name)
    x = _as_images(np.asarray(x))
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} inputs but {len(y)} labels")
    if x_test is None:
        x, x_test, y, y_test = _split(x, y, DEFAULT_TEST_FRACTION, seed)
    else:
        x_test = _as_images(np.asarray(x_test))
        y_test = np.asarray(y_test).reshape(-1).astype(np.int64)
    x_train, x_val, y_train, y_val = _split(x, y, val_fraction, seed + 1)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=int(max(y.max(), y_test.max())) + 1,
    )
