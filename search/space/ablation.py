"""One-factor-at-a-time ablation around the best configuration: which trials to run.

For each named parameter: each value of a Choice/Boolean, or a grid for an Int/Float (the space's
own steps when it has at most ``MAX_STEPPED_POINTS`` of them, else ``GRID_POINTS`` spread over the
range on its sampling scale: decades-like points for a log range, through Keras Tuner's
``prob_to_value``), plus the best value itself (the reference every other value is compared
with), every other parameter held at the best value, ``repeats`` times each (different trial
numbers give different seeds: the spread of the repeats is the seed noise).

An optimizer value that brings a ``momentum`` parameter with it (SGD in ``search.blocks``) is
tried twice: with its momentum (the best configuration's, else the default) and without
(``"sgd, momentum=0"``, plain SGD).

On request (``interaction``), the first two parameters are also crossed: every value of the first
with every value of the second (a two-factor grid around the best configuration, the others held
at theirs), ``repeats`` times each, tagged ``{"param": "a x b", "pair": [a, b], "value": [va, vb],
...}``: whether the best value of one depends on the other (the learning rate on the optimizer).

``plan`` is pure: it returns the configurations; enqueueing them is the caller's job.
"""

from __future__ import annotations

import math

import numpy as np

from search.errors import SearchError
from search.options import MAX_TRIALS
from search.space.bridge import param_mapping

GRID_POINTS = 5
MAX_STEPPED_POINTS = 7
# The most trials one ablation queues: each is a row the study holds (and one insert now), and
# ten thousand trials measure any effect a few repeats per value can show many times over.
MAX_QUEUED = 10_000


def _kind(hp) -> str:
    return type(hp).__name__


def _stepped_values(hp) -> list:
    return list(param_mapping(hp).grid)


def grid(hp, best_value=None) -> list:
    """The values ablation visits for one Keras Tuner hyperparameter (best value included)."""
    kind = _kind(hp)
    if kind == "Boolean":
        values = [False, True]
    elif kind == "Choice":
        values = list(hp.values)
    elif kind == "Fixed":
        raise SearchError(f"{hp.name} is fixed: there is nothing to ablate")
    elif kind in ("Int", "Float"):
        cast = int if kind == "Int" else float
        stepped = hp.step is not None and (kind == "Float" or hp.step != 1 or hp.sampling != "linear"
                                           or hp.max_value - hp.min_value < MAX_STEPPED_POINTS)
        if stepped and hp.sampling != "reverse_log":
            values = [cast(v) for v in _stepped_values(hp)]
            values = [_tidy(v) if kind == "Float" else v for v in values]
            if len(values) > MAX_STEPPED_POINTS:
                picks = np.linspace(0, len(values) - 1, GRID_POINTS).round().astype(int)
                values = [values[i] for i in sorted(set(picks))]
        else:
            values = [cast(hp.prob_to_value(p)) for p in np.linspace(0.0, 1.0, GRID_POINTS)]
            values = [_tidy(v) if kind == "Float" else v for v in values]
        values = sorted(set(values))
    else:
        raise SearchError(f"hyperparameter {hp.name!r}: unsupported kind {kind}")
    if best_value is not None and not any(_same(best_value, v) for v in values):
        values.append(best_value)
        if kind in ("Int", "Float"):
            values.sort()
    return values


def _tidy(value: float) -> float:
    """12 significant digits: 1e-5 * 10**1.0 prints as 1e-4, not 0.00010000000000000002."""
    return float(f"{value:.12g}") if value and math.isfinite(value) else value


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _active(hp, values: dict) -> bool:
    return all(condition.is_active(values) for condition in hp.conditions)


def configuration(best_values: dict, space, name: str, value) -> dict:
    """The best configuration with ``name`` set to ``value``; conditional parameters that this
    activates take their default, those it deactivates are dropped (in the space's order)."""
    values = dict(best_values)
    values[name] = value
    for hp in space.space:
        if hp.name == name:
            continue
        if _active(hp, values):
            if hp.name not in values:
                values[hp.name] = hp.default if _kind(hp) != "Fixed" else hp.value
        else:
            values.pop(hp.name, None)
    return values


MOMENTUM = "momentum"


def _variants(best_values: dict, space, name: str, values: list) -> list[tuple]:
    """(label, configuration) per value; a value that activates a nonzero ``momentum`` also
    without it."""
    variants = []
    for value in values:
        config = configuration(best_values, space, name, value)
        variants.append((value, config))
        momentum = config.get(MOMENTUM)
        if name != MOMENTUM and isinstance(value, str) and isinstance(momentum, (int, float)) and momentum:
            variants.append((f"{value}, momentum=0", {**config, MOMENTUM: 0.0}))
    return variants


def pair_label(pair: list[str]) -> str:
    """The ``param`` of a two-factor grid's trials: ``learning_rate x optimizer``."""
    return " x ".join(pair)


def plan(best_values: dict, space, params: list[str], repeats: int,
         room: int | None = None, interaction: bool = False) -> list[dict]:
    """The ablation trials: ``{"params": full hyperparameter values, "ablation": {"param",
    "value", "repeat", "center"}}`` for each parameter, each grid value, each repeat (in that
    order), then, with ``interaction``, the first two parameters' grid (``"pair"`` in the tag).
    ``space``: the study's discovered ``keras_tuner.HyperParameters``. ``room``: how many trials
    the study can still take; more, or more than ``MAX_QUEUED``, is refused before any is listed."""
    if repeats < 1:
        raise SearchError(f"repeats must be at least 1 (got {repeats})")
    if not params:
        raise SearchError("name at least one parameter to ablate")
    by_name = {hp.name: hp for hp in space.space}
    unknown = [p for p in params if p not in by_name]
    if unknown:
        raise SearchError(f"unknown parameter(s) {', '.join(unknown)}: the space has "
                          f"{', '.join(by_name)}")
    inactive = [p for p in params if p not in best_values]
    if inactive:
        raise SearchError(f"{', '.join(inactive)} not active in the best configuration: "
                          "nothing to ablate around it")
    if interaction and len(params) < 2:
        raise SearchError("--interaction crosses two parameters: name them first in --params "
                          "(e.g. --params learning_rate,optimizer)")
    variants = {name: _variants(best_values, space, name, grid(by_name[name], best_values[name]))
                for name in params}
    cells = _cells(best_values, space, params[:2], by_name) if interaction else []
    configurations = sum(len(v) for v in variants.values()) + len(cells)
    if room is not None and configurations * repeats > room:
        raise SearchError(f"--repeats {repeats} queues {configurations * repeats} trials "
                          f"({configurations} configurations x {repeats}): the study has room for "
                          f"{room} more (a study holds at most {MAX_TRIALS}); lower --repeats")
    if configurations * repeats > MAX_QUEUED:
        raise SearchError(f"--repeats {repeats} queues {configurations * repeats} trials "
                          f"({configurations} configurations x {repeats}): one ablation queues at "
                          f"most {MAX_QUEUED}; lower --repeats or name fewer --params")
    trials = []
    for name in params:
        center = best_values[name]
        for value, config in variants[name]:
            for repeat in range(repeats):
                trials.append({"params": dict(config),
                               "ablation": {"param": name, "value": value, "repeat": repeat,
                                            "center": center}})
    pair = list(params[:2])
    for values, config in cells:
        for repeat in range(repeats):
            trials.append({"params": dict(config),
                           "ablation": {"param": pair_label(pair), "pair": pair, "value": values,
                                        "repeat": repeat, "center": [best_values[p] for p in pair]}})
    return trials


def _cells(best_values: dict, space, pair: list[str], by_name: dict) -> list[tuple[list, dict]]:
    """([value of the first, value of the second], configuration) for every cell of the pair's
    grid; a cell whose second parameter the first's value deactivates is left out."""
    first, second = pair
    cells = []
    for a in grid(by_name[first], best_values[first]):
        row = configuration(best_values, space, first, a)
        if second not in row and second in best_values:
            continue  # e.g. momentum under a non-SGD optimizer
        for b in grid(by_name[second], best_values[second]):
            cells.append(([a, b], configuration(row, space, second, b)))
    return cells
