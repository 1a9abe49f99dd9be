"""Optuna pruners by name (``--pruner``), built alike by every worker from the study's configuration.

Each epoch's objective is reported to the trial (``search.execution.callbacks``); the pruner decides from
those reports whether to stop the trial. Hyperband and ASHA count resources in epochs: from one
epoch to the study's epoch cap.

Every pruner a worker builds also answers a stop request (Ctrl-C): once ``stop`` is set, the
running trial stops at the end of its current epoch, the next time it reports. The request is a
mixin on Optuna's own class, so ``isinstance(pruner, HyperbandPruner)`` still holds (Optuna
filters Hyperband's brackets by that test).

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


class _Stoppable:
    """Mixin: prune every trial once ``self.stop`` is set."""

    stop: threading.Event

    def prune(self, study, trial) -> bool:
        if self.stop.is_set():
            return True
        if trial.user_attrs.get(trial_attrs.ABLATION):
            return False
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
