"""search.space.labels: one-hot labels for a model compiled with a categorical loss, or as the space says."""

import keras
import numpy as np
import pytest

from search.space import labels


def model(loss):
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss=loss)
    return m


@pytest.mark.parametrize("loss, expected", [
    ("categorical_crossentropy", "one_hot"),
    (keras.losses.CategoricalCrossentropy(), "one_hot"),
    (keras.losses.categorical_crossentropy, "one_hot"),
    ("sparse_categorical_crossentropy", "sparse"),
    (keras.losses.SparseCategoricalCrossentropy(), "sparse"),
    ("mse", "sparse"),
])
def test_the_loss_decides_unless_the_space_says(loss, expected):
    m = model(loss)
    assert labels.encoding_for(m, None) == expected
    assert labels.encoding_for(m, "sparse") == "sparse" and labels.encoding_for(m, "one_hot") == "one_hot"


def test_one_hot_rows_are_made_once_per_label_array():
    y = np.array([0, 2, 1, 2])
    one_hot = labels.encode(y, 3, "one_hot")
    assert one_hot.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert labels.encode(y, 3, "one_hot") is one_hot  # reused by the next trial
    assert labels.encode(y, 3, "sparse") is y
    assert labels.encode(one_hot, 3, "one_hot") is one_hot  # already one-hot: left as it is


def test_a_shape_error_says_what_to_set():
    error = ValueError("Arguments `target` and `output` must have the same rank (ndim).")
    assert 'set LABELS = "one_hot" in the space' in labels.hint(error, "sparse")
    assert 'set LABELS = "sparse"' in labels.hint(error, "one_hot")
    assert labels.hint(RuntimeError("out of memory"), "sparse") == ""
