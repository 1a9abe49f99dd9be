"""How a trial's labels reach its model: sparse integers, or one-hot rows.

The data sets hold integer labels 0..K-1. A model compiled with a categorical loss
(``categorical_crossentropy`` and its kin, as ``keras_tuner.applications``' HyperResNet and
HyperXception and the Keras Tuner guides compile) wants one-hot rows: it gets them without being
asked. A space may say what it wants with ``LABELS = "one_hot"`` or ``LABELS = "sparse"``
(e.g. for a custom loss this module cannot read).
"""

from __future__ import annotations

import keras
import numpy as np

SPARSE, ONE_HOT = "sparse", "one_hot"
ENCODINGS = (SPARSE, ONE_HOT)

# Losses that compare the model's output with a one-hot row (their names as compile() takes them).
ONE_HOT_LOSSES = frozenset({
    "categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge",
})
_ONE_HOT_LOSS_CLASSES = (keras.losses.CategoricalCrossentropy, keras.losses.CategoricalFocalCrossentropy,
                         keras.losses.CategoricalHinge)

_cache: dict = {}  # (id(y), len(y), classes) -> (y, one-hot y): one-hot copies reused by trials
_CACHED = 8


def _loss_names(loss) -> list[str]:
    if isinstance(loss, dict):
        return [n for v in loss.values() for n in _loss_names(v)]
    if isinstance(loss, (list, tuple)):
        return [n for v in loss for n in _loss_names(v)]
    if isinstance(loss, str):
        return [loss.lower()]
    if isinstance(loss, _ONE_HOT_LOSS_CLASSES):
        return ["categorical_crossentropy"]
    name = getattr(loss, "__name__", None) or getattr(loss, "name", None)
    return [str(name).lower()] if name else []


def encoding_for(model, declared: str | None) -> str:
    """The encoding ``model`` gets: the space's ``LABELS``, else one-hot for a categorical loss,
    else sparse."""
    if declared in ENCODINGS:
        return declared
    names = _loss_names(getattr(model, "loss", None))
    return ONE_HOT if names and all(n in ONE_HOT_LOSSES for n in names) else SPARSE


def encode(y: np.ndarray, classes: int, encoding: str) -> np.ndarray:
    """``y`` (integer labels) as ``encoding`` wants them; one-hot copies are cached per array."""
    if encoding != ONE_HOT or y.ndim != 1:
        return y
    key = (id(y), len(y), classes)
    hit = _cache.get(key)
    if hit is not None and hit[0] is y:
        return hit[1]
    if len(_cache) >= _CACHED:
        _cache.pop(next(iter(_cache)))
    one_hot = keras.utils.to_categorical(y, classes).astype("float32")
    _cache[key] = (y, one_hot)  # holding y keeps its id from being reused while cached
    return one_hot


def hint(error: BaseException, encoding: str) -> str:
    """What to set when ``error`` (raised by fit) looks like labels of the wrong shape; else ""."""
    text = str(error).lower()
    if not ("rank" in text or "shape" in text or "incompatible" in text):
        return ""
    other = ONE_HOT if encoding == SPARSE else SPARSE
    given = "sparse integer" if encoding == SPARSE else "one-hot"
    return f' ({given} labels were given; if the model wants {other.replace("_", "-")} labels, ' \
           f'set LABELS = "{other}" in the space)'
