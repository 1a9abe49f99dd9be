"""A space whose trials do no training: five hyperparameters (as a small real space has), then a
sleep of fixed length, and a value computed from the hyperparameters. It runs through the real
worker loop (claim, ask, the bridge's suggestions, heartbeats, record, tell), so a study of it
measures what the store and the loop cost per trial, and how that scales with workers.

Set by the environment of ``search start`` (workers inherit it; the space's source stays the same,
so a stored study can be resumed):

- ``BENCH_SLEEP_S``: seconds each trial sleeps (default 0.2);
- ``BENCH_REPORTS``: epochs to report to the trial before the sleep ends (default 0: none);
- ``BENCH_BARRIER``: a file path; the first trial of each worker waits until it exists, so the
  benchmark can start the clock once every worker has started (imports, data, study) and is ready.
"""

import math
import os
import time

import keras
import keras_tuner as kt

DATA = "digits"
OBJECTIVE = "val_accuracy"
DIRECTION = "max"

_state = {"first": True}


class _NoModel(keras.Model):
    """What build returns: a Keras model (as Keras Tuner requires of build) with no weights and
    nothing to train (the runner counts its parameters; a best-epoch checkpoint of it is an empty
    weights list, saved as a file of a few bytes)."""

    def call(self, inputs):
        return inputs


class SleepModel(kt.HyperModel):
    def build(self, hp):
        hp.Float("x", -5.0, 5.0)
        hp.Float("lr", 1e-5, 1e-1, sampling="log")
        hp.Int("units", 16, 256, step=16)
        hp.Choice("optimizer", ["adam", "sgd", "rmsprop"])
        hp.Boolean("batch_norm")
        return _NoModel()

    def fit(self, hp, model, *args, epochs=1, callbacks=(), **kwargs):
        if not epochs:  # the space's discovery calls fit with epochs=0: nothing to wait for
            return 0.0
        barrier = os.environ.get("BENCH_BARRIER")
        if barrier and _state["first"]:
            while not os.path.exists(barrier):
                time.sleep(0.05)
        _state["first"] = False
        value = 1.0 / (1.0 + (hp["x"] - 1.0) ** 2 + (math.log10(hp["lr"]) + 3.0) ** 2
                       + ((hp["units"] - 128) / 128.0) ** 2 + 0.1 * (hp["optimizer"] != "adam"))
        sleep_s = float(os.environ.get("BENCH_SLEEP_S", "0.2"))
        reports = int(os.environ.get("BENCH_REPORTS", "0"))
        if reports <= 0:
            time.sleep(sleep_s)
            return value
        for cb in callbacks:
            cb.set_model(model)
        for epoch in range(reports):
            time.sleep(sleep_s / reports)
            logs = {"loss": 1.0 - value, "val_accuracy": value * (epoch + 1) / reports}
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
                cb.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        return None if callbacks else value
