"""Optuna pruners by name (``--pruner``), built alike by every worker from the study's configuration.

Each epoch's objective is reported to the trial (``search.execution.callbacks``); the pruner decides from
those reports whether to stop the trial. Hyperband and ASHA count resources in epochs: from one
epoch to the study's epoch cap.

Every pruner a worker builds also answers a stop request (Ctrl-C): once ``stop`` is set, the
running trial stops at the end of its current epoch, the next time it reports. The request is a
mixin on Optuna's own class, so ``isinstance(pruner, HyperbandPruner)`` still holds (Optuna
filters Hyperband's brackets by that test).

A trial run under a swept condition (``CONDITIONS``: its ``condition`` user attribute, set as
it starts) is compared with the trials of the same condition only: a 10-class trial's first epochs
are not worse than a 3-class trial's for its hyperparameters, and measured against them every
harder condition would be pruned (the median rule and successive halving; Hyperband's brackets
read the store themselves and still see every trial).

Ablation trials (``search ablate``, tagged with the ``ablation`` user attribute) are never
pruned: they are a controlled comparison, and a value stopped early is not comparable. A stop
request still stops them.
"""

from __future__ import annotations

import functools
import threading

import optuna

from search import trial_attrs
from search.errors import SearchError
from search.options import PRUNERS

REDUCTION_FACTOR = 3  # Optuna's default for Hyperband and successive halving


class _WithinCondition:
    """The study as a pruner sees it for a trial run under a swept condition: the trials of that
    condition only; everything else is the study's."""

    def __init__(self, study: optuna.Study, condition: dict):
        self._study, self._condition = study, condition

    def get_trials(self, deepcopy: bool = True, states=None) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.user_attrs.get(trial_attrs.CONDITION) == self._condition]

    def __getattr__(self, name):
        return getattr(self._study, name)


class _Stoppable:
    """Mixin: prune every trial once ``self.stop`` is set; compare a trial run under a condition
    with its condition's trials only."""

    stop: threading.Event

    def prune(self, study, trial) -> bool:
        if self.stop.is_set():
            return True
        if trial.user_attrs.get(trial_attrs.ABLATION):
            return False
        condition = trial.user_attrs.get(trial_attrs.CONDITION)
        if condition:
            study = _WithinCondition(study, condition)
        return super().prune(study, trial)


@functools.cache
def _stoppable(cls: type) -> type:
    return type(f"Stoppable{cls.__name__}", (_Stoppable, cls), {})


def make_pruner(name: str, max_epochs: int,
                stop: threading.Event | None = None) -> optuna.pruners.BasePruner:
    """Optuna's pruner named ``name``; ``stop``, once set, prunes the running trial."""
    if name == "none":
        cls, kwargs = optuna.pruners.NopPruner, {}
    elif name == "median":
        cls, kwargs = optuna.pruners.MedianPruner, {}
    elif name == "hyperband":
        cls, kwargs = optuna.pruners.HyperbandPruner, {
            "min_resource": 1, "max_resource": max(1, max_epochs), "reduction_factor": REDUCTION_FACTOR}
    elif name == "asha":
        cls, kwargs = optuna.pruners.SuccessiveHalvingPruner, {
            "min_resource": 1, "reduction_factor": REDUCTION_FACTOR}
    else:
        raise SearchError(f"unknown pruner {name!r}: use one of {', '.join(PRUNERS)}")
    pruner = _stoppable(cls)(**kwargs)
    pruner.stop = stop or threading.Event()
    return pruner
