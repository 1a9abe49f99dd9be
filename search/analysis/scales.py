"""How each hyperparameter is tabulated: one row per value (categorical) or per bin (continuous),
decades for log-scaled ones.

What a parameter is comes from the study's discovered space when given (a
``keras_tuner.HyperParameters`` or its ``get_config()`` dict: Choice/Boolean/Fixed are categorical,
Int/Float numeric, ``sampling="log"`` log-scaled), else from the trials' Optuna distributions under the
same name (``FloatDistribution.log``), else from the values themselves.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution

from search.console.format import short

# A numeric parameter with at most this many distinct values gets one row per value.
MAX_VALUE_ROWS = 8
LINEAR_BINS = 5


@dataclass
class Scale:
    name: str
    categorical: bool
    log: bool = False
    ordered: bool = True          # values have an order (numbers): "x and above" makes sense
    choices: list = field(default_factory=list)  # the space's order of a Choice's values


def space_entries(space) -> dict[str, dict]:
    """``name -> {"class_name", "config"}`` from a HyperParameters object or its config dict."""
    if space is None:
        return {}
    config = space.get_config() if hasattr(space, "get_config") else space
    return {entry["config"]["name"]: entry for entry in config.get("space", [])}


def scale_of(name: str, values: pd.Series, entry: dict | None,
             distribution: BaseDistribution | None) -> Scale:
    observed = values.dropna()
    numeric = (len(observed) > 0 and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                                         for v in observed.head(200)))
    ordered = numeric
    distinct = observed.nunique()
    if entry is not None:
        kind, config = entry["class_name"], entry["config"]
        if kind == "Boolean":
            return Scale(name, True, ordered=False, choices=[False, True])
        if kind in ("Choice", "Fixed"):
            choices = list(config.get("values", [config.get("value")]))
            return Scale(name, True, ordered=ordered, choices=choices)
        log = config.get("sampling") == "log"
        if distinct <= MAX_VALUE_ROWS and (kind == "Int" or config.get("step")):
            return Scale(name, True, log=log, ordered=True)
        return Scale(name, False, log=log and _positive(observed))
    if isinstance(distribution, CategoricalDistribution) or not numeric:
        choices = list(distribution.choices) if isinstance(distribution, CategoricalDistribution) else []
        return Scale(name, True, ordered=ordered, choices=choices)
    log = bool(getattr(distribution, "log", False))
    if distinct <= MAX_VALUE_ROWS:
        return Scale(name, True, log=log, ordered=True)
    return Scale(name, False, log=log and _positive(observed))


def _positive(values: pd.Series) -> bool:
    return bool(len(values)) and float(pd.to_numeric(values).min()) > 0


def scales(frame: pd.DataFrame, names: list[str], trials, space=None) -> dict[str, Scale]:
    """The scale of each named parameter (``frame`` holds its values as ``hp.<name>``)."""
    entries = space_entries(space)
    distributions: dict[str, BaseDistribution] = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            distributions.setdefault(name, dist)
        if len(distributions) and all(n in distributions for n in names):
            break
    return {name: scale_of(name, frame["hp." + name], entries.get(name),
                           distributions.get(name)) for name in names}


def bin_edges(values: pd.Series, scale: Scale) -> np.ndarray:
    """Decades for a log-scaled parameter, ``LINEAR_BINS`` equal-width bins otherwise."""
    numbers = pd.to_numeric(values.dropna()).to_numpy(dtype=float)
    low, high = float(numbers.min()), float(numbers.max())
    if scale.log:
        first = math.floor(math.log10(low) + 1e-9)
        last = max(math.ceil(math.log10(high) - 1e-9), first + 1)
        return 10.0 ** np.arange(first, last + 1)
    if low == high:
        return np.array([low, high + 1.0])
    return np.linspace(low, high, LINEAR_BINS + 1)


def bin_labels(edges: np.ndarray, log: bool = False) -> list[str]:
    """``low..high`` per bin; decades as powers of ten (``1e-2..1e-1``)."""
    def text(edge: float) -> str:
        return f"1e{round(math.log10(edge))}" if log else short(edge)
    return [f"{text(a)}..{text(b)}" for a, b in itertools.pairwise(edges)]


def group_keys(values: pd.Series, scale: Scale) -> tuple[pd.Series, list]:
    """Each trial's row key, and the rows in display order."""
    if scale.categorical:
        # Python scalars, as iterating the Series gives them: repr(np.int64(16)) is not repr(16).
        present = [p.item() if isinstance(p, np.generic) else p for p in pd.unique(values.dropna())]
        order = [c for c in scale.choices if any(_same(c, p) for p in present)]
        rest = [p for p in present if not any(_same(p, c) for c in order)]
        try:
            rest = sorted(rest)
        except TypeError:
            rest = sorted(rest, key=str)
        rows = order + rest
        # Each trial's key is its row's own value: a column that also holds missing values is a
        # float column (32.0 for the choice 32), and a figure looks rows up by the key's repr.
        keys = pd.Series([next((r for r in rows if _same(r, v)), v) if pd.notna(v) else None
                          for v in values], index=values.index, dtype=object)
        return keys, rows
    edges = bin_edges(values, scale)
    numbers = pd.to_numeric(values, errors="coerce")
    right = not scale.log
    codes = pd.cut(numbers, edges, labels=False, right=right, include_lowest=True)
    if scale.log:  # the top edge itself (e.g. exactly 1e-1) belongs to the last decade
        codes = codes.where(numbers != edges[-1], len(edges) - 2)
    labels = bin_labels(edges, scale.log)
    keys = codes.map(lambda c: labels[int(c)] if pd.notna(c) else None)
    return keys, labels


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b or (not isinstance(a, bool) and not isinstance(b, bool) and a == b)
