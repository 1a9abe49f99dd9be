"""The Keras Tuner guides' patterns (keras.io "Getting started", "Failed trials", applications),
written from the documented APIs, as hypermodel code that runs unchanged three ways: through
``search start`` (the code as a space module), through ``search.Tuner``, and through Keras Tuner's
own ``RandomSearch`` (the reference each is compared with).

Each :class:`Pattern` holds the hypermodel source (it defines ``HYPERMODEL``, a build function or
a ``HyperModel`` instance, exactly as a Keras Tuner user passes it to a tuner), the objective the
user gives the tuner (None: Keras Tuner's default), and the labels the user's own data holds.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pattern:
    name: str
    source: str  # defines HYPERMODEL
    objective: tuple[str, str] | None  # (name, direction) given to the tuner; None: not given
    one_hot: bool  # the user's data holds one-hot labels (the model is compiled for them)
    trials: int = 3

    def space_source(self) -> str:
        """The hypermodel code as a space module (the same code; nothing added)."""
        return self.source

    def cli_objective(self) -> list[str]:
        if self.objective is None:
            return []
        return ["--objective", self.objective[0], "--direction", self.objective[1]]


_BUILD_MODEL = '''
import keras
import keras_tuner
from keras import layers

def build_model(hp):
    model = keras.Sequential()
    model.add(layers.Flatten())
    model.add(layers.Dense(units=hp.Int("units", min_value=32, max_value=128, step=32),
                           activation=hp.Choice("activation", ["relu", "tanh"])))
    if hp.Boolean("dropout"):
        model.add(layers.Dropout(rate=0.25))
    model.add(layers.Dense(10, activation="softmax"))
    learning_rate = hp.Float("lr", min_value=1e-3, max_value=1e-2, sampling="log")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model
'''

PATTERNS = {
    # Getting started: a build function, one-hot labels, categorical cross-entropy.
    "build_function": Pattern("build_function", _BUILD_MODEL + "\nHYPERMODEL = build_model\n",
                              ("val_accuracy", "max"), one_hot=True),
    # Getting started: a HyperModel subclass whose fit() tunes shuffle (the guide, verbatim).
    "tuned_fit": Pattern("tuned_fit", _BUILD_MODEL + '''
class MyHyperModel(keras_tuner.HyperModel):
    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, shuffle=hp.Boolean("shuffle"), **kwargs)

HYPERMODEL = MyHyperModel()
''', ("val_accuracy", "max"), one_hot=True),
    # Getting started: a custom metric as the objective (Objective("val_custom_metric", "max")).
    "custom_metric": Pattern("custom_metric", '''
import keras
from keras import layers, ops

class CustomMetric(keras.metrics.Metric):
    def __init__(self, **kwargs):
        super().__init__(name="custom_metric", **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        hits = ops.cast(ops.equal(ops.argmax(y_true, -1), ops.argmax(y_pred, -1)), "float32")
        self.total.assign_add(ops.sum(hits))
        self.count.assign_add(ops.cast(ops.shape(hits)[0], "float32"))

    def result(self):
        return self.total / self.count

def build_regressor(hp):
    model = keras.Sequential([layers.Flatten(),
                              layers.Dense(units=hp.Int("units", 32, 128, 32), activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=[CustomMetric()])
    return model

HYPERMODEL = build_regressor
''', ("val_custom_metric", "max"), one_hot=True),
    # Getting started: fit() evaluates the model itself and returns a float (no objective:
    # Keras Tuner minimises it as default_objective).
    "fit_returns_float": Pattern("fit_returns_float", '''
import keras
import keras_tuner
import numpy as np
from keras import layers

class HyperRegressor(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([layers.Flatten(),
                                  layers.Dense(units=hp.Int("units", 8, 32, 8), activation="relu"),
                                  layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        return model

    def fit(self, hp, model, x, y, validation_data, **kwargs):
        model.fit(x, y, **kwargs)
        x_val, y_val = validation_data
        y_pred = model.predict(x_val, verbose=0)
        return np.mean(np.abs(y_pred - y_val.reshape(-1, 1)))

HYPERMODEL = HyperRegressor()
''', None, one_hot=False),
    # Getting started, "Tune a regression model": float targets, the validation MAE minimised.
    "regression": Pattern("regression", '''
import keras
from keras import layers

def build_regressor(hp):
    model = keras.Sequential([
        layers.Dense(units=hp.Int("units", 32, 128, 32), activation="relu"),
        layers.Dense(units=1),
    ])
    model.compile(optimizer="adam", loss="mean_squared_error", metrics=["mean_absolute_error"])
    return model

HYPERMODEL = build_regressor
''', ("val_mean_absolute_error", "min"), one_hot=False),
    # Getting started: fit() returns a dict of metrics with objective=Objective("metric_a", "max").
    "fit_returns_dict": Pattern("fit_returns_dict", _BUILD_MODEL + '''
class DictHyperModel(keras_tuner.HyperModel):
    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, x, y, validation_data, **kwargs):
        model.fit(x, y, **kwargs)
        x_val, y_val = validation_data
        loss, accuracy = model.evaluate(x_val, y_val, verbose=0)
        return {"metric_a": accuracy, "metric_b": -loss}

HYPERMODEL = DictHyperModel()
''', ("metric_a", "max"), one_hot=True),
    # Failed trials guide: FailedTrialError for some configurations, the search goes on.
    "failed_trial_error": Pattern("failed_trial_error", '''
import keras
import keras_tuner
from keras import layers

def build_model(hp):
    size = hp.Int("units", min_value=32, max_value=128, step=32)
    if size > 64:
        raise keras_tuner.errors.FailedTrialError(f"Model too large: {size} units")
    model = keras.Sequential([layers.Flatten(), layers.Dense(size, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model

HYPERMODEL = build_model
''', ("val_accuracy", "max"), one_hot=True, trials=6),
    # Failed trials guide: FatalError stops the whole search.
    "fatal_error": Pattern("fatal_error", '''
import keras
import keras_tuner
from keras import layers

def build_model(hp):
    size = hp.Int("units", min_value=32, max_value=128, step=32)
    if size > 32:
        raise keras_tuner.errors.FatalError("this search cannot go on")
    model = keras.Sequential([layers.Flatten(), layers.Dense(size, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model

HYPERMODEL = build_model
''', ("val_accuracy", "max"), one_hot=True, trials=6),
    # Every trial fails (in fit: the default configuration builds, so the study is created):
    # Keras Tuner stops after max_consecutive_failed_trials (3).
    "always_fails": Pattern("always_fails", '''
import keras
import keras_tuner
from keras import layers

class AlwaysFails(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([layers.Flatten(), layers.Dense(hp.Int("units", 32, 128, step=32)),
                                  layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        raise ValueError("no configuration trains")

HYPERMODEL = AlwaysFails()
''', ("val_accuracy", "max"), one_hot=True, trials=6),
    # keras_tuner.applications on the digits (8x8 grey images, 10 classes).
    "hyper_xception": Pattern("hyper_xception", '''
import keras_tuner

HYPERMODEL = keras_tuner.applications.HyperXception(input_shape=(8, 8, 1), classes=10)
''', ("val_accuracy", "max"), one_hot=True, trials=1),
    # keras_tuner.applications.HyperImageAugment in front of a small model.
    "hyper_image_augment": Pattern("hyper_image_augment", '''
import keras
import keras_tuner
from keras import layers

augment = keras_tuner.applications.HyperImageAugment(input_shape=(8, 8, 1), augment_layers=0,
                                                     rotate=[0.0, 0.1], translate_x=None,
                                                     translate_y=None, contrast=None)

def build_model(hp):
    inputs = keras.Input(shape=(8, 8, 1))
    x = augment.build(hp)(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(hp.Int("units", 32, 64, step=32), activation="relu")(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model

HYPERMODEL = build_model
''', ("val_accuracy", "max"), one_hot=True),
}


def digits(one_hot: bool, float_targets: bool = False):
    """The digits as a Keras Tuner user loads them: (x_train, y_train), (x_val, y_val), x scaled
    to [0, 1], labels one-hot when the model wants them (the guide's ``to_categorical``)."""
    from search import _datasets

    ds = _datasets.load("digits", 0)

    def labels(y):
        if float_targets:
            return y.astype("float32")
        return np.eye(10, dtype="float32")[y] if one_hot else y

    scale = lambda x: x.astype("float32") / 255.0  # noqa: E731
    return (scale(ds.x_train), labels(ds.y_train)), (scale(ds.x_val), labels(ds.y_val))


def regression_data(seed: int = 0, train: int = 100, val: int = 20, features: int = 10):
    """The guides' random regression data: ``x = np.random.rand(n, 10)``, ``y = np.random.rand(n, 1)``
    (seeded), as ``(x_train, y_train), (x_val, y_val)``."""
    rng = np.random.default_rng(seed)
    return ((rng.random((train, features)), rng.random((train, 1))),
            (rng.random((val, features)), rng.random((val, 1))))


def build_model_source() -> str:
    """The guides' ``build_model(hp)`` as a module that names it nothing else (no ``HYPERMODEL``)."""
    return textwrap.dedent(_BUILD_MODEL)


def module_source(pattern: Pattern) -> str:
    return textwrap.dedent(pattern.source)


def run(name: str, which: str, folder: str, storage: str | None = None) -> dict:
    """Run pattern ``name`` through Keras Tuner's RandomSearch (``which="keras_tuner"``) or
    ``search.Tuner`` (``"search"``) in this process; what came out: trials, their states, the
    objective's direction, and the error search() raised (one line) if any."""
    import keras_tuner

    pattern = PATTERNS[name]
    namespace: dict = {}
    exec(compile(module_source(pattern), f"<{name}>", "exec"), namespace)
    objective = keras_tuner.Objective(*pattern.objective) if pattern.objective else None
    (x, y), (xv, yv) = digits(pattern.one_hot, float_targets=name == "fit_returns_float")
    if which == "keras_tuner":
        # Keras Tuner imports TensorBoard for every trial on the TensorFlow backend, for a
        # TensorBoard callback this search does not pass; the test machine has no TensorBoard.
        keras_tuner.engine.tuner.Tuner._configure_tensorboard_dir = lambda *args, **kwargs: None
        tuner = keras_tuner.RandomSearch(namespace["HYPERMODEL"], objective=objective,
                                         max_trials=pattern.trials, directory=folder,
                                         project_name=name, seed=0)
    else:
        from search import Tuner

        tuner = Tuner(namespace["HYPERMODEL"], objective=objective, max_trials=pattern.trials,
                      directory=folder, project_name=name, seed=0, storage=storage)
    error = None
    try:
        tuner.search(x, y, epochs=2, validation_data=(xv, yv), verbose=0)
    except Exception as exc:  # what a notebook sees: Keras Tuner's raise, or ours
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    return {
        "states": [str(t.status) for t in trials],
        "units": [t.hyperparameters.values.get("units") for t in trials],
        "direction": tuner.oracle.objective.direction,
        "objective": tuner.oracle.objective.name,
        "error": error,
    }


if __name__ == "__main__":  # python -m search.testing.kt_guides NAME keras_tuner|search FOLDER [STORAGE]
    import json
    import sys

    print("OUTCOME " + json.dumps(run(*sys.argv[1:])))
