"""The Keras callback that connects a fit to its Optuna trial.

Each epoch it records every metric (learning curves), reports the objective to the trial so a
pruner can stop it, keeps the best epoch by the objective (Keras Tuner's rule for a trial's score)
when the epoch logs it (a ``fit()`` may compute its objective after training and return it, as
Keras Tuner allows: then nothing is reported and the epochs are recorded only)
and, when asked, a copy of the model's weights at that epoch (the trial's checkpoint, so nothing
is re-trained to get it), times the training steps, and stops training when the loss becomes NaN.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import keras
import optuna


class TrialStopped(Exception):
    """Raised when a later phase of a trial's training starts after the trial was stopped."""


class StepTimer(keras.callbacks.Callback):
    """Times the training part of each epoch and counts its steps, with no per-batch hook.

    Keras runs a fit's batches without waiting on the host only when no callback overrides a
    batch hook (CallbackList's async dispatch), so steps are read from the optimizer's step
    counter once per epoch, and an epoch's training part ends where its validation begins.
    """

    def __init__(self):
        super().__init__()
        self.epochs: list[tuple[float, int, float]] = []  # (training s, steps, whole epoch s)

    @property
    def epochs_run(self) -> int:
        return len(self.epochs)

    @property
    def train_steps(self) -> int:
        return sum(steps for _, steps, _ in self.epochs)

    @property
    def step_seconds(self) -> float:
        return sum(seconds for seconds, _, _ in self.epochs)

    @property
    def epoch_seconds(self) -> float:
        return sum(seconds for _, _, seconds in self.epochs)

    @property
    def epoch_times(self) -> list[dict]:
        """Each epoch's training seconds and steps, in order (the ``epoch_times`` attribute): the
        first epoch, which compiles, apart from the steady ones that follow."""
        return [{"train_seconds": round(seconds, 4), "steps": int(steps)}
                for seconds, steps, _ in self.epochs]

    @property
    def ms_per_step(self) -> float | None:
        return 1000.0 * self.step_seconds / self.train_steps if self.train_steps else None

    def _iterations(self) -> int | None:
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        return None if iterations is None else int(keras.ops.convert_to_numpy(iterations))

    def _end_training_part(self) -> None:
        if self._train_end is None:
            self._train_end = time.perf_counter()
            at_end, at_start = self._iterations(), self._iterations_at_start
            counted = at_end - at_start if at_end is not None and at_start is not None else 0
            # a custom train_step may step no optimizer: then the epoch's planned steps
            self._steps = counted or self.params.get("steps") or 0

    def on_epoch_begin(self, epoch, logs=None):
        self._iterations_at_start = self._iterations()
        self._train_end = None
        self._epoch_start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._end_training_part()  # the epoch's validation starts

    def on_epoch_end(self, epoch, logs=None):
        self._end_training_part()  # no validation data
        self.epochs.append((self._train_end - self._epoch_start, self._steps,
                            time.perf_counter() - self._epoch_start))


class TrialCallback(StepTimer):
    def __init__(self, trial: optuna.Trial, objective: str, direction: str,
                 keep_weights: bool = False, require_objective: bool = True):
        """``require_objective``: the fit's result is its History, so an epoch that does not log
        the objective stops the trial (it can never be scored)."""
        super().__init__()
        self.require_objective = require_objective
        self.keep_weights = keep_weights
        self.best_weights: list | None = None  # the weights at the best epoch (keep_weights=True)
        self.best_weights_of: keras.Model | None = None  # the model they belong to
        self.trial = trial
        self.objective = objective
        self.direction = direction
        self.history: dict[str, list[float]] = defaultdict(list)
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.pruned = False
        self.nan_epoch: int | None = None
        self.missing_objective: list[str] | None = None

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.direction == "max" else value < self.best_value

    @property
    def stopped(self) -> bool:
        return self.pruned or self.nan_epoch is not None or self.missing_objective is not None

    def on_train_begin(self, logs=None):
        if self.stopped:
            raise TrialStopped()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)  # the epoch's times and steps
        logs = logs or {}
        for name, value in logs.items():
            self.history[name].append(float(value))
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_epoch = epoch
            self.model.stop_training = True
            return
        if self.objective not in logs:
            if self.require_objective:
                self.missing_objective = sorted(logs)
                self.model.stop_training = True
            return
        value = float(logs[self.objective])
        if self._better(value):
            self.best_value, self.best_epoch = value, epoch
            if self.keep_weights:
                self.best_weights, self.best_weights_of = self.model.get_weights(), self.model
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True

    def metrics_at_best_epoch(self) -> dict[str, float]:
        if self.best_epoch is None:
            return {}
        return {name: values[self.best_epoch] for name, values in self.history.items()
                if len(values) > self.best_epoch}
