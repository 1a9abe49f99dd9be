"""An in-memory Optuna study of the search trials keyed by the hyperparameters' real values.

Optuna's importance evaluators and visualizations read a study; the stored one names a
``reverse_log`` parameter ``<name>.reverse_log_u``, holds the ablation trials (which are not
search samples), and makes every ``get_trials()`` pay for its large user attributes
(``plot_optimization_history`` deep-copies all of them: 7 s at 10,000 trials). This view holds
what those functions need: state, value, datetimes and ``hp_values`` with a distribution each.
"""

from __future__ import annotations

import copy
import datetime
import math

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from search.analysis.scales import Scale

STATES = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED, "FAIL": TrialState.FAIL}


class _ViewTrial(FrozenTrial):
    """A view trial is never changed after it is built: a copy may share its dictionaries
    (``add_trials`` deep-copies every trial it stores: 6 s for 10,000 on the 2-core machine)."""

    def __deepcopy__(self, memo):
        return copy.copy(self)


class _ReadOnlyStorage(optuna.storages.InMemoryStorage):
    """The view's storage: written once when the view is built, then only read. Its trials need
    no defensive copies, which Optuna's visualizations ask for (``plot_optimization_history``
    deep-copies every trial: 3 s of a 10,000-trial report)."""

    def get_all_trials(self, study_id, deepcopy=True, states=None):
        return super().get_all_trials(study_id, deepcopy=False, states=states)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def distribution(values: pd.Series, scale: Scale):
    """The Optuna distribution spanning a parameter's observed values."""
    values = values.dropna()
    if values.empty:
        return None
    if scale.categorical:
        choices = list(pd.unique(values))
        try:
            choices = sorted(choices)
        except TypeError:
            choices = sorted(choices, key=str)
        return CategoricalDistribution([_plain(c) for c in choices])
    numbers = pd.to_numeric(values).astype(float)
    low, high = float(numbers.min()), float(numbers.max())
    return FloatDistribution(low, high if high > low else low + 1e-12, log=scale.log and low > 0)


def search_view(frame: pd.DataFrame, names: list[str], scales: dict[str, Scale],
                maximize: bool) -> optuna.Study:
    """The finished search trials of ``frame`` as an in-memory study (real values)."""
    rows = frame[frame["state"].isin(STATES) & frame["ablation_param"].isna()]
    distributions = {n: d for n in names
                     if (d := distribution(rows["hp." + n], scales[n])) is not None}
    kept = list(distributions)
    now = datetime.datetime.now()
    trials = []
    columns = ["number", "state", "value", "datetime_start", "datetime_complete",
               *("hp." + n for n in kept)]
    for number, state, value, start, complete, *params in rows[columns].itertuples(index=False):
        values = {}
        for name, param in zip(kept, params):
            if param is None or (isinstance(param, float) and math.isnan(param)):
                continue
            values[name] = _plain(param) if scales[name].categorical else float(param)
        state = STATES[state]
        done = state == TrialState.COMPLETE and value is not None and not math.isnan(value)
        trials.append(_ViewTrial(
            number=int(number), state=state if state != TrialState.COMPLETE or done else TrialState.FAIL,
            value=float(value) if done else None, values=None,
            datetime_start=start if isinstance(start, datetime.datetime) else now,
            datetime_complete=complete if isinstance(complete, datetime.datetime) else now,
            params=values, distributions={n: distributions[n] for n in values},
            user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=int(number)))
    study = optuna.create_study(storage=_ReadOnlyStorage(),
                                direction="maximize" if maximize else "minimize")
    study.add_trials(trials)
    return study
