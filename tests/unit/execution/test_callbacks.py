"""search.execution.callbacks.TrialCallback on real fits: steps and times per epoch, best epoch, NaN, pruning."""

import math

import keras
import numpy as np
import optuna
import pytest

from search.execution.callbacks import TrialCallback

N, BATCH = 200, 32


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 8)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int32")


def trial(pruner=None):
    study = optuna.create_study(direction="maximize", pruner=pruner or optuna.pruners.NopPruner())
    return study.ask()


def fit(callback, x, y, epochs=3, validation=True, logits=False):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh" if logits else "relu"),
                              keras.layers.Dense(2, activation=None if logits else "softmax")])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[callback],
              validation_data=(x[:50], y[:50]) if validation else None)
    return model


@pytest.mark.parametrize("validation", [True, False])
def test_counts_steps_and_times_the_training_part_of_each_epoch(validation):
    objective = "val_accuracy" if validation else "accuracy"
    callback = TrialCallback(trial(), objective, "max")
    fit(callback, *data(), epochs=3, validation=validation)
    assert callback.epochs_run == 3
    assert callback.train_steps == 3 * math.ceil(N / BATCH)  # the optimizer's steps, every epoch
    assert 0 < callback.step_seconds <= callback.epoch_seconds
    assert callback.ms_per_step == pytest.approx(1000 * callback.step_seconds / callback.train_steps)
    curve = callback.history[objective]
    assert len(curve) == 3 and callback.best_value == max(curve)
    assert callback.best_epoch == curve.index(max(curve))
    assert callback.metrics_at_best_epoch()[objective] == callback.best_value
    assert callback.trial.storage.get_trial(callback.trial._trial_id).intermediate_values == dict(enumerate(curve))


def test_has_no_per_batch_hook():
    # Keras dispatches a fit's batches without waiting on the host only when no callback overrides
    # a batch hook (CallbackList's async dispatch, on thread-safe backends such as JAX).
    for hook in ("on_batch_end", "on_train_batch_end", "on_train_batch_begin", "on_batch_begin"):
        assert getattr(TrialCallback, hook) is getattr(keras.callbacks.Callback, hook), hook


def test_nan_loss_stops_the_fit_at_that_epoch():
    x, y = data()
    x[3, 0] = np.nan
    callback = TrialCallback(trial(), "val_accuracy", "max")
    # tanh and logits: TensorFlow's relu and the clip of a softmax's cross-entropy both turn a
    # NaN into a number, so the loss would stay finite
    fit(callback, x, y, epochs=4, logits=True)
    assert callback.nan_epoch == 0 and callback.epochs_run == 1 and callback.stopped


def test_a_pruned_trial_stops_after_the_epoch_it_was_pruned_at():
    pruner = optuna.pruners.ThresholdPruner(lower=2.0)  # no accuracy reaches 2: prune at once
    callback = TrialCallback(trial(pruner), "val_accuracy", "max")
    fit(callback, *data(), epochs=4)
    assert callback.pruned and callback.epochs_run == 1
    assert callback.train_steps == math.ceil(N / BATCH)


def test_each_epochs_train_seconds_and_steps_are_kept_for_the_trial():
    callback = TrialCallback(trial(), "val_accuracy", "max")
    fit(callback, *data(), epochs=3)
    times = callback.epoch_times
    assert [e["steps"] for e in times] == [math.ceil(N / BATCH)] * 3
    assert sum(e["train_seconds"] for e in times) == pytest.approx(callback.step_seconds, abs=1e-3)
