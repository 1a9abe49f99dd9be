"""The Keras Tuner <-> Optuna bridge: Keras Tuner hyperparameters whose values come from an Optuna trial.

Keras Tuner gives every new hyperparameter its value in one place, ``HyperParameters._register``.
:class:`TrialHyperParameters` fills the value there from ``trial.suggest_*`` (define-by-run), so a
space's conditional scopes, ``parent_name``/``parent_values`` and plain Python branches keep working,
and only active parameters are ever suggested, once each.

How each Keras Tuner kind maps to an Optuna distribution (:func:`param_mapping`):

==========================  ============================================================
Keras Tuner                 Optuna
==========================  ============================================================
Int linear (step)           IntDistribution(low, high, step)
Int log, no step            IntDistribution(low, high, log=True)
Float linear [step]         FloatDistribution(low, high[, step])
Float log, no step          FloatDistribution(low, high, log=True)
Int/Float log with step     CategoricalDistribution of the multiplicative grid (Optuna has no log+step)
Int/Float reverse_log       FloatDistribution(0, 1) on ``<name>.reverse_log_u``; the value is
                            ``hp.prob_to_value(u)`` (Optuna has no reverse-log), recorded at
                            once as the user attribute ``hp.<name>``, so optuna-dashboard and
                            ``trials_dataframe()`` (``user_attrs_hp.<name>``) show what ran
Choice                      CategoricalDistribution(values) (``ordered`` is kept by Keras Tuner only)
Choice of bools, Boolean    CategoricalDistribution([False, True]) with real bools
Fixed, ``--set`` values     not suggested: the value is fixed
==========================  ============================================================

The values a trial actually used (every active parameter, fixed ones included) are
``hp.values``; the runner stores them on the trial as the ``hp_values`` user attribute.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import keras_tuner as kt
from keras_tuner.engine import hyperparameters as hp_types

from search import trial_attrs
from search.errors import SpaceError

REVERSE_LOG_SUFFIX = ".reverse_log_u"
GRID_POINTS_CONTINUOUS = 10  # Keras Tuner's own grid for a continuous range


@dataclass(frozen=True)
class ParamMapping:
    """How one Keras Tuner hyperparameter is asked of Optuna."""

    param: str  # the Optuna parameter name
    method: str  # suggest_<method>: "int", "float" or "categorical"
    kwargs: dict = field(default_factory=dict)
    decode: Callable[[Any], Any] | None = None  # Optuna value -> Keras Tuner value
    grid: tuple = ()  # the values a grid search visits (Optuna values)

    def suggest(self, trial) -> Any:
        value = getattr(trial, f"suggest_{self.method}")(self.param, **self.kwargs)
        return self.decode(value) if self.decode else value


def _step_grid(hp) -> list:
    """The values of a stepped range. Linear ranges count steps with a tolerance, so that
    Float(0, 0.5, step=0.1) includes 0.5 (Keras Tuner's floor division of 0.5 // 0.1 drops it)."""
    if hp.sampling == "linear":
        n_values = int(math.floor((hp.max_value - hp.min_value) / hp.step + 1e-9)) + 1
    else:
        n_values = hp._get_n_values()
    return [hp._get_value_by_index(i) for i in range(n_values)]


def param_mapping(hp: kt.engine.hyperparameters.HyperParameter) -> ParamMapping | None:
    """The Optuna side of a Keras Tuner hyperparameter; None for a Fixed one."""
    if isinstance(hp, hp_types.Fixed):
        return None
    if isinstance(hp, hp_types.Boolean):
        return ParamMapping(hp.name, "categorical", {"choices": [False, True]}, grid=(False, True))
    if isinstance(hp, hp_types.Choice):
        values = list(hp.values)
        return ParamMapping(hp.name, "categorical", {"choices": values}, grid=tuple(values))
    if not isinstance(hp, (hp_types.Int, hp_types.Float)):
        raise SpaceError(f"hyperparameter {hp.name!r}: unsupported kind {type(hp).__name__}")

    is_int = isinstance(hp, hp_types.Int)
    cast = int if is_int else float
    if hp.sampling == "reverse_log":
        grid = tuple((i + 0.5) / GRID_POINTS_CONTINUOUS for i in range(GRID_POINTS_CONTINUOUS))
        return ParamMapping(
            hp.name + REVERSE_LOG_SUFFIX, "float", {"low": 0.0, "high": 1.0},
            decode=lambda u, hp=hp: cast(hp.prob_to_value(u)), grid=grid,
        )
    if hp.sampling == "log" and hp.step is not None:
        values = [cast(v) for v in _step_grid(hp)]
        return ParamMapping(hp.name, "categorical", {"choices": values}, grid=tuple(values))
    if hp.sampling == "log":
        kwargs = {"low": hp.min_value, "high": hp.max_value, "log": True}
        grid = tuple(sorted({cast(hp.prob_to_value((i + 0.5) / GRID_POINTS_CONTINUOUS))
                             for i in range(GRID_POINTS_CONTINUOUS)}))
        return ParamMapping(hp.name, "int" if is_int else "float", kwargs, grid=grid)
    # linear
    if hp.step is not None:
        values = _step_grid(hp)
        if math.isclose(values[-1], hp.max_value, rel_tol=1e-9, abs_tol=1e-12):
            values[-1] = hp.max_value  # 0 + 19 * 0.05 is 0.9500000000000001: Optuna would warn
        kwargs = {"low": hp.min_value, "high": values[-1], "step": hp.step}
        return ParamMapping(hp.name, "int" if is_int else "float", kwargs,
                            grid=tuple(cast(v) for v in values))
    kwargs = {"low": hp.min_value, "high": hp.max_value}
    grid = tuple(hp.prob_to_value((i + 0.5) / GRID_POINTS_CONTINUOUS)
                 for i in range(GRID_POINTS_CONTINUOUS))
    return ParamMapping(hp.name, "float", kwargs, grid=grid)


def coerce_fixed(hp, raw: Any) -> Any:
    """A ``--set`` value (often a string from the command line) as a value of ``hp``'s space."""
    def bad(why: str) -> SpaceError:
        return SpaceError(f"--set {hp.name}={raw}: {why}")

    if isinstance(hp, hp_types.Fixed):
        target = hp.value
        if isinstance(target, bool):
            return _to_bool(raw, bad)
        if isinstance(target, (int, float)) and not isinstance(raw, (int, float)):
            try:
                return type(target)(raw)
            except ValueError:
                raise bad(f"expected a {type(target).__name__}") from None
        return raw
    if isinstance(hp, hp_types.Boolean):
        return _to_bool(raw, bad)
    if isinstance(hp, hp_types.Choice):
        for value in hp.values:
            if raw == value or str(value) == str(raw):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    if float(raw) == float(value):
                        return value
                except (TypeError, ValueError):
                    pass
        if "imagenet" in hp.values and isinstance(raw, str) and os.path.isfile(raw):
            # keras.applications' own `weights` convention: "imagenet", None or a weights file.
            return os.path.abspath(raw)
        extra = " or a weights file that exists" if "imagenet" in hp.values else ""
        raise bad(f"not one of the choices {list(hp.values)}{extra}")
    cast = int if isinstance(hp, hp_types.Int) else float
    try:
        value = cast(float(raw)) if cast is int and float(raw).is_integer() else cast(raw)
    except (TypeError, ValueError):
        raise bad(f"expected a{'n int' if cast is int else ' float'}") from None
    if not hp.min_value <= value <= hp.max_value or (isinstance(value, float) and math.isnan(value)):
        raise bad(f"outside the range [{hp.min_value}, {hp.max_value}]")
    return value


def _to_bool(raw: Any, bad) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise bad("expected true or false")


class TrialHyperParameters(kt.HyperParameters):
    """``keras_tuner.HyperParameters`` that take their values from an Optuna trial.

    Without a trial, every parameter takes its default (what Keras Tuner does when it discovers
    a space). ``fixed`` holds ``--set`` values: those parameters are fixed, not suggested.
    """

    def __init__(self, trial=None, fixed: dict | None = None):
        super().__init__()
        self.trial = trial
        self.fixed = dict(fixed or {})

    def Choice(self, name, values, ordered=None, default=None, parent_name=None, parent_values=None):
        # Keras Tuner turns Choice([True, False]) into ints (bool is an int): keep it a real bool.
        if values and all(isinstance(v, bool) for v in values):
            if len(set(values)) == 1:
                return self.Fixed(name, values[0], parent_name=parent_name, parent_values=parent_values)
            return self.Boolean(name, default=bool(values[0] if default is None else default),
                                parent_name=parent_name, parent_values=parent_values)
        return super().Choice(name, values, ordered=ordered, default=default,
                              parent_name=parent_name, parent_values=parent_values)

    def _register(self, hyperparameter, overwrite=False):
        hp = hyperparameter
        if self._conditions_are_active(hp.conditions) and hp.name not in self.values:
            self.values[hp.name] = self._value_for(hp)
            overwrite = False
        return super()._register(hp, overwrite=overwrite)

    def _value_for(self, hp) -> Any:
        if hp.name in self.fixed:
            return coerce_fixed(hp, self.fixed[hp.name])
        mapping = param_mapping(hp)
        if mapping is None:
            return hp.value  # Fixed
        if self.trial is None:
            return hp.default
        value = mapping.suggest(self.trial)
        if mapping.decode is not None:  # Optuna holds another variable: record the value used too
            self.trial.set_user_attr(trial_attrs.used_value_key(hp.name), value)
        return value


def to_optuna_params(hps: kt.HyperParameters, values: dict) -> dict:
    """Keras Tuner values -> Optuna parameters (for ``study.enqueue_trial``); fixed ones left out."""
    params = {}
    for hp in hps.space:
        if hp.name not in values:
            continue
        mapping = param_mapping(hp)
        if mapping is None or mapping.param in params:
            continue
        value = values[hp.name]
        params[mapping.param] = hp.value_to_prob(value) if mapping.decode else value
    return params
