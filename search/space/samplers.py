"""Optuna samplers by name, seeded per worker so parallel workers do not repeat each other."""

from __future__ import annotations

import math

import keras_tuner as kt
import optuna

from search.errors import SearchError
from search.options import MAX_SEED, SAMPLERS
from search.space.bridge import param_mapping

GRID_LIMIT = 100_000


def grid_space(hps: kt.HyperParameters, fixed: dict) -> dict[str, list]:
    """Optuna parameter name -> the values a grid search visits (fixed parameters left out)."""
    space = {}
    for hp in hps.space:
        if hp.name in fixed:
            continue
        mapping = param_mapping(hp)
        if mapping is not None and mapping.param not in space:
            space[mapping.param] = list(mapping.grid)
    return space


def grid_size(hps: kt.HyperParameters, fixed: dict) -> int:
    """How many points the grid of the space has."""
    return math.prod(len(values) for values in grid_space(hps, fixed).values())


class BudgetedGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once the grid is exhausted: that call is
    only valid inside ``study.optimize`` (workers use ask/tell), and the study's budget, capped at
    the grid's size when the study is created, already ends the search."""

    def after_trial(self, study, trial, state, values):
        pass


def make_sampler(name: str, seed: int | None, hps: kt.HyperParameters | None = None,
                 fixed: dict | None = None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if hps is None:
            raise SearchError("the grid sampler needs the space's hyperparameters")
        size = grid_size(hps, fixed or {})
        if size > GRID_LIMIT:
            raise SearchError(f"the grid has {size} points (more than {GRID_LIMIT}): "
                              "fix some parameters with --set or use --sampler tpe")
        return BudgetedGridSampler(grid_space(hps, fixed or {}), seed=seed)
    raise SearchError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")


def worker_seed(seed: int, slot: int) -> int:
    """Distinct, reproducible seeds for the workers of one study, in the range NumPy takes (a
    process id as the slot, or a large --seed, would leave it)."""
    return (seed * 1000 + slot) % (MAX_SEED + 1)
