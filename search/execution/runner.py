"""Run one trial: build the space's model with the trial's hyperparameters, fit it, score it.

The score is the best epoch's objective (Keras Tuner's rule). What a trial leaves on its Optuna
trial as user attributes:

- ``hp_values``: every active hyperparameter value the trial used (fixed ones included)
- ``history``: per-epoch curves of every metric
- ``metrics``: the metrics at the best epoch, ``best_epoch``, ``epochs``, ``train_seconds`` (in
  ``fit``'s epochs), ``trial_seconds`` (build and fit),
  ``ms_per_step``, ``epoch_times`` (each epoch's training seconds and steps), ``trainable_params``,
  ``non_trainable_params``
- ``seed``: the seed of its weights and shuffling (the study's seed and the trial number, so
  repeats of one configuration, e.g. ablation repeats, differ)
- ``fail_reason`` (one line, what tables show) when the trial failed, and ``fail_detail``
  (:func:`failure_detail`: the exception's type, its whole message and the last frames of the
  space's own code, bounded) when an exception failed it

A completed trial's outcome carries ``save_weights(path)``, which writes its best-epoch weights
(kept in memory by the callback, nothing re-trained) to an ``.npz`` file, the arrays of
``model.get_weights()`` in order (no optimizer state: a third of the size with Adam); the worker
calls it for the trials whose checkpoint it keeps (``search.execution.checkpoints``), and
:func:`load_weights` puts them into the same model built again.

A space's ``fit`` may run several phases (``model.fit`` more than once with the callbacks it was
given, e.g. frozen base then fine-tuning); the epochs count on across phases, and once a trial is
pruned or diverged, a later phase does not start.

What ``fit`` receives and returns is Keras Tuner's (``Tuner.run_trial``, ``HyperModel.fit``):
``x, y`` positionally, ``validation_data``, ``epochs``, ``callbacks`` and ``verbose`` as keywords;
the labels one-hot where the model is compiled with a categorical loss or the space says
``LABELS = "one_hot"`` (``search.space.labels``). It may return a History (scored by its best
epoch), a dict of metrics holding the objective, a number (the objective's value), or a list of
these (averaged, as Keras Tuner averages executions); a dict without the objective is extra
metrics beside epochs that logged it. As in Keras Tuner: ``keras_tuner.errors.FailedTrialError``
(or any other exception) fails the trial and the study goes on; ``FatalError``, a ``build()``
that returns no model, or a result Keras Tuner rejects (None, a dict without the objective, any
other type) fails the trial as fatal (``TrialOutcome.fatal``): the worker stops the study.
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import keras_tuner as kt
import numpy as np
import optuna
from optuna.trial import TrialState

from search import _datasets, trial_attrs
from search.errors import one_line
from search.execution.callbacks import TrialCallback, TrialStopped
from search.options import MAX_SEED, StudyConfig
from search.space import conditions, labels
from search.space.bridge import TrialHyperParameters
from search.space.loader import Space
from search.storage import set_user_attrs

# The steps of a trial, as :func:`run_trial` reports them to its ``on_phase``.
BUILD, FIT, SCORING = "build()", "fit()", "scoring"


@dataclass
class TrialOutcome:
    state: TrialState
    value: float | None = None
    reason: str | None = None
    attrs: dict = field(default_factory=dict)
    save_weights: Callable[[str], None] | None = field(default=None, repr=False)
    checkpoint_problem: str | None = None  # why a completed trial has no best-epoch weights
    fatal: bool = False  # Keras Tuner's FatalError: the study stops (the reason says why)
    detail: str | None = None  # the exception behind the failure (:func:`failure_detail`)


class TrialFailed(Exception):
    """The trial cannot be scored; the message is the stored reason."""


class FatalResult(kt.errors.FatalError):
    """A result Keras Tuner rejects as fatal (``validate_trial_results``): the study stops."""


def _plain(value):
    """JSON-friendly Python value (numpy scalars -> Python)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _count_params(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


def _float_metrics(returned: dict) -> dict[str, float]:
    return {k: float(v) for k, v in returned.items()}


def _score_history(history: keras.callbacks.History, callback: TrialCallback, objective: str):
    """A History a custom fit returned without passing our callbacks on: scored after the fact by
    its best epoch (Keras Tuner's rule)."""
    for name, values in history.history.items():
        callback.history[name] = [float(v) for v in values]
    for epoch, value in enumerate(callback.history.get(objective, [])):
        if callback._better(value):
            callback.best_value, callback.best_epoch = value, epoch


def _score_from_return(returned, callback: TrialCallback, objective: str):
    """The trial's value and metrics from what ``fit`` returned (Keras Tuner's
    ``convert_to_metrics_dict``, checked as its ``validate_trial_results``)."""
    if isinstance(returned, list) and returned:  # several executions: their metrics averaged
        scored = [_score_from_return(r, callback, objective)[1] for r in returned]
        metrics = {k: float(np.mean([m[k] for m in scored if k in m])) for k in scored[0]}
        return metrics[objective], metrics
    if isinstance(returned, (numbers.Real, np.floating)) and not isinstance(returned, bool):
        return float(returned), {**callback.metrics_at_best_epoch(), objective: float(returned)}
    if isinstance(returned, dict):
        if objective in returned:
            return float(returned[objective]), _float_metrics(returned)
        if callback.best_value is None:
            raise FatalResult(f"fit() returned a dict without the objective {objective!r} "
                              f"(keys: {', '.join(sorted(returned)) or 'none'}): return it, or set "
                              "--objective to one of the keys")
        # Extra metrics of a multi-phase fit (e.g. an autoencoder's reconstruction loss) beside the
        # epochs it reported through the callbacks.
        return callback.best_value, {**callback.metrics_at_best_epoch(), **_float_metrics(returned)}
    if isinstance(returned, keras.callbacks.History):
        if callback.epochs_run == 0:
            _score_history(returned, callback, objective)
        if callback.best_value is None:
            logged = sorted(returned.history) or sorted(callback.history)
            raise TrialFailed(_not_logged(objective, logged))
        return callback.best_value, callback.metrics_at_best_epoch()
    if returned is None and callback.best_value is not None:
        return callback.best_value, callback.metrics_at_best_epoch()  # reported through the callbacks
    if returned is None:
        raise FatalResult("fit() returned None: return the History of model.fit(), a dict of "
                          "metrics or the objective's value")
    raise FatalResult(f"fit() returned a {type(returned).__name__}: expected a History, a dict "
                      "of metrics, a number or a list of them")


def _not_logged(objective: str, logged) -> str:
    names = ", ".join(logged) or "none"
    return (f"the objective {objective!r} is not among the metrics the model logs ({names}): "
            "set --objective to one of them, or compile the model with the metric (and pass "
            "validation data for a val_ metric)")


def _fit_labels(space: Space, model, data: _datasets.Dataset) -> tuple[np.ndarray, np.ndarray, str]:
    """The training and validation labels as the model wants them (``search.space.labels``)."""
    encoding = labels.encoding_for(model, space.labels)
    return (labels.encode(data.y_train, data.num_classes, encoding),
            labels.encode(data.y_val, data.num_classes, encoding), encoding)


def run_trial(trial: optuna.Trial, space: Space, dataset: _datasets.Dataset,
              config: StudyConfig, callbacks: list | tuple = (),
              on_phase: Callable[[str], None] = lambda phase: None) -> TrialOutcome:
    """Build, fit and score one trial; never raises for a failing configuration. ``callbacks``
    (a ``search.Tuner.search()`` caller's) are copied for the trial and run before ours, as
    Keras Tuner runs them. ``on_phase`` is told each step as it begins (``build()``, ``fit()``,
    ``scoring``): what a supervisor names when the process dies in it."""
    keras.backend.clear_session()  # also runs a full gc.collect() (Keras 3: free_memory=True)
    seed = trial_seed(config.seed, trial.number)
    keras.utils.set_random_seed(seed)
    _datasets.activate(dataset)
    condition = ({} if trial_attrs.ABLATION in trial.user_attrs  # an ablation holds its center
                 else conditions.condition_for(conditions.of_study(space.conditions, config.sweep),
                                               trial.number, config.fixed))
    if condition:  # the pruner compares the trial with its condition's trials (space.pruners)
        trial.set_user_attr(trial_attrs.CONDITION, condition)
    hp = TrialHyperParameters(trial, fixed={**condition, **config.fixed})
    # A History result can only be scored from its epochs: an epoch without the objective ends it.
    history_result = not space.custom_fit or config.fit_returns == "history"
    callback = TrialCallback(trial, config.objective, config.direction,
                             keep_weights=config.keep_best > 0, require_objective=history_result)
    attrs: dict = {}
    encoding = labels.SPARSE
    started = time.perf_counter()
    try:
        on_phase(BUILD)
        model = space.hypermodel.build(hp)
        if not isinstance(model, keras.Model):
            raise FatalResult(f"build() returned {type(model).__name__}, not a Keras model")
        trained_on = _datasets.in_use()  # the class subset build() selected, or the whole set
        _datasets.warn_if_unscaled(model, trained_on)
        attrs[trial_attrs.TRAINABLE_PARAMS] = _count_params(model.trainable_weights)
        attrs[trial_attrs.NON_TRAINABLE_PARAMS] = _count_params(model.non_trainable_weights)
        y_train, y_val, encoding = _fit_labels(space, model, trained_on)
        kwargs = dict(epochs=config.epochs, callbacks=[*copy.deepcopy(list(callbacks)), callback],
                      verbose=0)
        if len(trained_on.x_val):
            kwargs["validation_data"] = (trained_on.x_val, y_val)
        if not space.custom_fit and "batch_size" in hp.values:
            kwargs["batch_size"] = hp.values["batch_size"]
        kwargs.update(config.fit_kwargs)
        on_phase(FIT)
        try:
            returned = space.hypermodel.fit(hp, model, trained_on.x_train, y_train, **kwargs)
        except TrialStopped:  # a later fit() of a multi-phase trial, after pruning or NaN
            returned = None
        on_phase(SCORING)
        if callback.nan_epoch is not None:
            raise TrialFailed(f"diverged: the loss became NaN at epoch {callback.nan_epoch + 1}")
        if callback.missing_objective is not None:
            raise TrialFailed(_not_logged(config.objective, callback.missing_objective))
        value, metrics = _score_from_return(returned, callback, config.objective)
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
        fatal = isinstance(exc, kt.errors.FatalError)
        shown = str(exc) if isinstance(exc, FatalResult) else one_line(exc)
        reason = f"{where}: {shown}"
        if where == "fit" and not fatal:
            reason += labels.hint(exc, encoding)
        outcome = TrialOutcome(TrialState.FAIL, reason=reason, fatal=fatal,
                               detail=failure_detail(exc, space.path))
    attrs.update({
        trial_attrs.SEED: seed,
        trial_attrs.HP_VALUES: {k: _plain(v) for k, v in hp.values.items()},
        trial_attrs.HISTORY: dict(callback.history),
        trial_attrs.BEST_EPOCH: callback.best_epoch,
        trial_attrs.EPOCHS: callback.epochs_run,
        trial_attrs.TRAIN_SECONDS: round(callback.epoch_seconds, 4),
        trial_attrs.TRIAL_SECONDS: round(time.perf_counter() - started, 4),
        trial_attrs.MS_PER_STEP: callback.ms_per_step,
        trial_attrs.EPOCH_TIMES: callback.epoch_times,
    })
    if condition:
        attrs[trial_attrs.CONDITION] = condition
    if outcome.reason:
        attrs[trial_attrs.FAIL_REASON] = outcome.reason
    if outcome.detail:
        attrs[trial_attrs.FAIL_DETAIL] = outcome.detail
    if outcome.fatal:
        attrs[trial_attrs.FATAL] = True
    outcome.attrs = attrs
    return outcome


# What a failure's detail keeps: the last frames of the space's own code (the deepest frames
# where none is the space's), the message up to a bound, and the whole up to another.
DETAIL_FRAMES = 3
DETAIL_MESSAGE_CHARS = 2000
DETAIL_CHARS = 4000


def failure_detail(exc: BaseException, user_file: str) -> str:
    """The exception that failed a trial, for the user: ``Type: message`` (every line of it,
    bounded) and the last frames of the user's code (the space module ``user_file``), as
    ``File ..., line N, in f`` lines; Keras-internal frames only where the space has none."""
    stack = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in stack if f.filename == user_file]
    frames = (mine or list(stack))[-DETAIL_FRAMES:]
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if len(message) > DETAIL_MESSAGE_CHARS:
        message = message[:DETAIL_MESSAGE_CHARS] + " ..."
    where = "".join(traceback.format_list(frames)).rstrip()
    text = f"{message}\n{where}" if where else message
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + " ..."


def trial_seed(study_seed: int, number: int) -> int:
    """The seed of trial ``number``: distinct per trial, reproducible per study, in the range
    NumPy takes (``keras.utils.set_random_seed`` refuses a larger one)."""
    return (study_seed * 100_003 + number) % (MAX_SEED + 1)


def save_weights(weights: list, path: str) -> None:
    """Write ``weights`` (a model's ``get_weights()``) to the ``.npz`` file ``path``."""
    with open(path, "wb") as f:
        np.savez(f, *weights)


def load_weights(model: keras.Model, path: str) -> None:
    """Set ``model``'s weights from a file :func:`save_weights` wrote (shapes are checked)."""
    with np.load(path) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])


def record(trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """Store the outcome's attributes on the trial (before it is told): one transaction for all
    of them where the store allows (``storage.set_user_attrs``), not one apiece."""
    set_user_attrs(trial, outcome.attrs)

