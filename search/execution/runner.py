"""Run one trial: build the space's model with the trial's hyperparameters, fit it, score it.

The score is the best epoch's objective (Keras Tuner's rule). What a trial leaves on its Optuna
trial as user attributes:

- ``hp_values``: every active hyperparameter value the trial used (fixed ones included)
- ``history``: per-epoch curves of every metric
- ``metrics``: the metrics at the best epoch, ``best_epoch``, ``epochs``, ``train_seconds`` (in
  ``fit``'s epochs), ``trial_seconds`` (build and fit),
  ``ms_per_step``, ``trainable_params``, ``non_trainable_params``
- ``seed``: the seed of its weights and shuffling (the study's seed and the trial number, so
  repeats of one configuration, e.g. ablation repeats, differ)
- ``fail_reason`` (one line) when the trial failed

A completed trial's outcome carries ``save_weights(path)``, which writes its best-epoch weights
(kept in memory by the callback, nothing re-trained) to an ``.npz`` file, the arrays of
``model.get_weights()`` in order (no optimizer state: a third of the size with Adam); the worker
calls it for the trials whose checkpoint it keeps (``search.execution.checkpoints``), and
:func:`load_weights` puts them into the same model built again.

A space's ``fit`` may run several phases (``model.fit`` more than once with the callbacks it was
given, e.g. frozen base then fine-tuning); the epochs count on across phases, and once a trial is
pruned or diverged, a later phase does not start. It may return a History, a dict with the
objective, a number, or a dict of extra metrics to record beside the reported epochs.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import optuna
from optuna.trial import TrialState

from search import _datasets, trial_attrs
from search.errors import one_line
from search.execution.callbacks import TrialCallback, TrialStopped
from search.options import StudyConfig
from search.space.bridge import TrialHyperParameters
from search.space.loader import Space


@dataclass
class TrialOutcome:
    state: TrialState
    value: float | None = None
    reason: str | None = None
    attrs: dict = field(default_factory=dict)
    save_weights: Callable[[str], None] | None = field(default=None, repr=False)
    checkpoint_problem: str | None = None  # why a completed trial has no best-epoch weights


class TrialFailed(Exception):
    """The trial cannot be scored; the message is the stored reason."""


def _plain(value):
    """JSON-friendly Python value (numpy scalars -> Python)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _count_params(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


def _score_from_return(returned, callback: TrialCallback, objective: str, direction: str):
    """The trial's value from what ``fit`` returned: a History, a dict or a number (as Keras Tuner)."""
    if isinstance(returned, numbers.Real) and not isinstance(returned, bool):
        return float(returned), {objective: float(returned)}
    if isinstance(returned, dict) and objective not in returned and callback.best_value is not None:
        # Extra metrics of a multi-phase fit (e.g. an autoencoder's reconstruction loss) beside the
        # epochs it reported through the callbacks.
        return callback.best_value, {**callback.metrics_at_best_epoch(),
                                     **{k: float(v) for k, v in returned.items()}}
    if isinstance(returned, dict):
        if objective not in returned:
            raise TrialFailed(f"fit() returned a dict without the objective {objective!r} "
                              f"(keys: {', '.join(sorted(returned))})")
        return float(returned[objective]), {k: float(v) for k, v in returned.items()}
    if callback.epochs_run == 0 and isinstance(returned, keras.callbacks.History):
        # A custom fit that did not pass our callbacks on: score its History after the fact.
        for name, values in returned.history.items():
            callback.history[name] = [float(v) for v in values]
        values = callback.history.get(objective, [])
        for epoch, value in enumerate(values):
            if callback._better(value):
                callback.best_value, callback.best_epoch = value, epoch
    if callback.best_value is None:
        raise TrialFailed(f"the objective {objective!r} was never reported "
                          "(compile the model with the matching metric and pass validation data)")
    return callback.best_value, callback.metrics_at_best_epoch()


def run_trial(trial: optuna.Trial, space: Space, dataset: _datasets.Dataset,
              config: StudyConfig) -> TrialOutcome:
    """Build, fit and score one trial; never raises for a failing configuration."""
    keras.backend.clear_session()  # also runs a full gc.collect() (Keras 3: free_memory=True)
    seed = trial_seed(config.seed, trial.number)
    keras.utils.set_random_seed(seed)
    _datasets.activate(dataset)
    hp = TrialHyperParameters(trial, fixed=config.fixed)
    callback = TrialCallback(trial, config.objective, config.direction,
                             keep_weights=config.keep_best > 0)
    attrs: dict = {}
    started = time.perf_counter()
    try:
        model = space.hypermodel.build(hp)
        trained_on = _datasets.in_use()  # the class subset build() selected, or the whole set
        attrs[trial_attrs.TRAINABLE_PARAMS] = _count_params(model.trainable_weights)
        attrs[trial_attrs.NON_TRAINABLE_PARAMS] = _count_params(model.non_trainable_weights)
        kwargs = dict(validation_data=(trained_on.x_val, trained_on.y_val), epochs=config.epochs,
                      callbacks=[callback], verbose=0)
        if not space.custom_fit and "batch_size" in hp.values:
            kwargs["batch_size"] = hp.values["batch_size"]
        try:
            returned = space.hypermodel.fit(hp, model, trained_on.x_train, trained_on.y_train, **kwargs)
        except TrialStopped:  # a later fit() of a multi-phase trial, after pruning or NaN
            returned = None
        if callback.nan_epoch is not None:
            raise TrialFailed(f"diverged: the loss became NaN at epoch {callback.nan_epoch + 1}")
        if callback.missing_objective is not None:
            raise TrialFailed(f"the objective {config.objective!r} is not among the logged metrics "
                              f"({', '.join(callback.missing_objective)})")
        value, metrics = _score_from_return(returned, callback, config.objective, config.direction)
        if not math.isfinite(value):
            raise TrialFailed(f"the objective {config.objective!r} is {value}")
        state = TrialState.PRUNED if callback.pruned else TrialState.COMPLETE
        outcome = TrialOutcome(state, value)
        attrs[trial_attrs.METRICS] = metrics
        if state == TrialState.COMPLETE and config.keep_best > 0:
            if callback.best_weights is not None and callback.best_weights_of is model:
                outcome.save_weights = functools.partial(save_weights, callback.best_weights)
            else:
                outcome.checkpoint_problem = ("no best-epoch weights: fit() did not train the built "
                                              "model with the callbacks it was given")
    except TrialFailed as exc:
        outcome = TrialOutcome(TrialState.FAIL, reason=str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a configuration that cannot be built or trained fails its trial only
        where = "build" if trial_attrs.TRAINABLE_PARAMS not in attrs else "fit"
        outcome = TrialOutcome(TrialState.FAIL, reason=f"{where}: {one_line(exc)}")
    attrs.update({
        trial_attrs.SEED: seed,
        trial_attrs.HP_VALUES: {k: _plain(v) for k, v in hp.values.items()},
        trial_attrs.HISTORY: dict(callback.history),
        trial_attrs.BEST_EPOCH: callback.best_epoch,
        trial_attrs.EPOCHS: callback.epochs_run,
        trial_attrs.TRAIN_SECONDS: round(callback.epoch_seconds, 4),
        trial_attrs.TRIAL_SECONDS: round(time.perf_counter() - started, 4),
        trial_attrs.MS_PER_STEP: callback.ms_per_step,
    })
    if outcome.reason:
        attrs[trial_attrs.FAIL_REASON] = outcome.reason
    outcome.attrs = attrs
    return outcome


def trial_seed(study_seed: int, number: int) -> int:
    """The seed of trial ``number``: distinct per trial, reproducible per study."""
    return study_seed * 100_003 + number


def save_weights(weights: list, path: str) -> None:
    """Write ``weights`` (a model's ``get_weights()``) to the ``.npz`` file ``path``."""
    with open(path, "wb") as f:
        np.savez(f, *weights)


def load_weights(model: keras.Model, path: str) -> None:
    """Set ``model``'s weights from a file :func:`save_weights` wrote (shapes are checked)."""
    with np.load(path) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])


def record(trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """Store the outcome's attributes on the trial (before it is told)."""
    for key, value in outcome.attrs.items():
        trial.set_user_attr(key, value)

