"""The two-factor ablation grid (``search ablate --interaction``): does the best value of one
factor depend on the other?

The grid's trials (tagged ``ablation = {"pair": [a, b], "value": [va, vb], ...}``) hold every other
factor at the best configuration's values and cross every value of ``a`` with every value of
``b``, ``repeats`` times each. Per cell: its completed repeats' mean and spread. The interaction
test is the two-way analysis of variance's: the cell-means model against the additive one (a
main effect per value of each factor) on the completed repeats, an F test on the residual sums of
squares (``scipy.stats.f``); with no cell repeated there is no noise to test against. The verdict
names the best cell and, when the test finds an interaction, the best value of ``a`` under each
value of ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from search.console.format import param_value

CELL_COLUMNS = ["first", "second", "trials", "complete", "failed", "mean", "std"]
ALPHA = 0.05


@dataclass
class InteractionEffect:
    pair: list[str]
    center: list
    cells: pd.DataFrame            # CELL_COLUMNS, one row per cell of the grid
    p_value: float | None          # the F test of the interaction (None: no repeats to test with)
    verdict: str
    best_per_second: dict = field(default_factory=dict)  # value of b -> the best value of a there
    held: dict = field(default_factory=dict)  # the other factors' values

    @property
    def label(self) -> str:
        return " x ".join(self.pair)

    @property
    def first_values(self) -> list:
        """The first factor's values, in the grid's order."""
        return _distinct(self.cells["first"])

    @property
    def second_values(self) -> list:
        return _distinct(self.cells["second"])


def _distinct(values) -> list:
    return list({repr(v): v for v in values}.values())


def _residual_squares(design: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """The least-squares residual sum of squares and its degrees of freedom."""
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    return float(residual @ residual), len(y) - int(rank)


def _one_hot(keys: list[str]) -> np.ndarray:
    levels = sorted(set(keys))
    return np.array([[k == level for level in levels] for k in keys], dtype=float)


def interaction_test(first: list, second: list, y: np.ndarray) -> float | None:
    """The F test's p-value that the cell means differ from the additive model's."""
    a, b = [repr(v) for v in first], [repr(v) for v in second]
    cells = [f"{x}|{z}" for x, z in zip(a, b)]
    full_ss, full_dof = _residual_squares(_one_hot(cells), y)
    additive = np.hstack([np.ones((len(y), 1)), _one_hot(a)[:, 1:], _one_hot(b)[:, 1:]])
    add_ss, add_dof = _residual_squares(additive, y)
    tested = add_dof - full_dof
    if full_dof <= 0 or tested <= 0:
        return None
    if full_ss <= 0:
        return 0.0 if add_ss > 0 else 1.0
    statistic = ((add_ss - full_ss) / tested) / (full_ss / full_dof)
    return float(stats.f.sf(max(statistic, 0.0), tested, full_dof))


def _sorted_by(rows: list[dict], key: str) -> list[dict]:
    """Rows in the order of their ``key`` values (as text where the values do not compare)."""
    try:
        return sorted(rows, key=lambda r: r[key])
    except TypeError:
        return sorted(rows, key=lambda r: str(r[key]))


def interaction_effect(trials: pd.DataFrame, maximize: bool) -> InteractionEffect:
    first_name, second_name = trials["ablation_pair"].iloc[0]
    center = list(trials["ablation_center"].iloc[0])
    rows = []
    for _, group in trials.groupby(trials["ablation_value"].map(repr), sort=False):
        a, b = group["ablation_value"].iloc[0]
        done = group.loc[group["state"] == "COMPLETE", "value"].astype(float)
        rows.append({"first": a, "second": b, "trials": len(group), "complete": len(done),
                     "failed": int((group["state"] == "FAIL").sum()),
                     "mean": done.mean() if len(done) else np.nan,
                     "std": done.std() if len(done) > 1 else np.nan})
    cells = pd.DataFrame(_sorted_by(rows, "first"), columns=CELL_COLUMNS)
    done = trials[trials["state"] == "COMPLETE"]
    pairs = list(done["ablation_value"])
    p = interaction_test([v[0] for v in pairs], [v[1] for v in pairs], done["value"].to_numpy(float)) \
        if len(done) else None
    measured = cells[cells["complete"] > 0]
    best_per_second = {}
    for _, column in measured.groupby(measured["second"].map(repr), sort=False):
        top = column.loc[column["mean"].idxmax() if maximize else column["mean"].idxmin()]
        best_per_second[param_value(top["second"])] = top["first"]
    held = {}
    for column in trials.columns:
        name = column[3:]
        if column.startswith("hp.") and name not in (first_name, second_name) and trials[column].notna().any():
            value = trials[column].dropna().iloc[0]
            held[name] = value.item() if isinstance(value, np.generic) else value
    verdict = _verdict(first_name, second_name, measured, p, best_per_second, maximize)
    return InteractionEffect([first_name, second_name], center, cells, p, verdict, best_per_second, held)


def _verdict(first: str, second: str, measured: pd.DataFrame, p: float | None,
             best_per_second: dict, maximize: bool) -> str:
    head = f"{first} x {second}"
    if measured.empty:
        return f"{head}: no cell has a completed trial yet"
    top = measured.loc[measured["mean"].idxmax() if maximize else measured["mean"].idxmin()]
    best = (f"best cell {first}={param_value(top['first'])}, {second}={param_value(top['second'])} "
            f"(mean {top['mean']:.3g})")
    if p is None:
        return f"{head}: {best}; no cell has two completed repeats, so no interaction test (--repeats 2 or more)"
    if p < ALPHA:
        by = ", ".join(f"{param_value(v)} with {s}" for s, v in best_per_second.items())
        return (f"{head}: interaction (F test p={p:.2g}): the best {first} depends on {second}: {by}; "
                f"{best}")
    return f"{head}: no interaction detected (F test p={p:.2g}): their effects add up; {best}"


def interaction_effects(frame: pd.DataFrame, maximize: bool) -> list[InteractionEffect]:
    """One effect per crossed pair, from the finished trials of its grid."""
    crossed = frame[frame["ablation_pair"].notna()]
    return [interaction_effect(trials, maximize)
            for _, trials in crossed.groupby(crossed["ablation_param"], sort=True)]
