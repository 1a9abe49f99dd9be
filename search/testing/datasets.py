"""Data set files in their published formats, written small for the tests (:func:`write_cifar100`),
and the per-process caches of loaded data sets emptied (:func:`clear_caches`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 2


def write_cifar100(folder: Path, classes: int = 100) -> Path:
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


def clear_caches() -> None:
    """Forget this process's loaded data sets and class subsets (the next load reads the files)."""
    from search import _datasets

    _datasets._load.cache_clear()
    _datasets._subset.cache_clear()
