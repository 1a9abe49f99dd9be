"""Per-parameter effect tables of the search trials, and a verdict line in plain words.

A table has one row per value (categorical) or per bin (continuous; decades when log-scaled). Its
answer is the model-based marginal mean and effect (``marginal``: every completed and pruned trial
counts, bootstrap 95% intervals inside the metric's range) with a verdict per row: helps, hurts,
no effect detected, too few trials. Beside it, the completed trials' own statistics (mean, t
interval kept inside the metric's range, median, best), the time cost (steady seconds per epoch
and ms per step, the first epoch, which compiles, apart: medians over the row's trials; and the
steady seconds per epoch from the additive model, ``marginal.time_effects``) and the
counts of completed, pruned, failed and diverged trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from search.analysis.marginal import ABSENT, FACTOR_ALPHA, MARGINAL_COLUMNS
from search.analysis.marginal import MIN_TRIALS as MIN_MODEL_TRIALS
from search.analysis.scales import Scale, group_keys
from search.console.format import param_value

ROW_COLUMNS = ["value", "trials", "complete", "pruned", "failed", "diverged", *MARGINAL_COLUMNS,
               "mean", "ci_low", "ci_high", "median", "best", "sec_per_epoch", "sec_per_epoch_model",
               "ms_per_step", "first_epoch_s", "gap"]
CONFIDENCE = 0.95
# A row "fails" when at least this share of its finished trials failed (and at least two did).
FAILING_SHARE = 0.5


@dataclass
class ParamEffect:
    name: str
    scale: Scale
    rows: pd.DataFrame          # ROW_COLUMNS, in display order
    verdict: str
    p_value: float | None = None  # Kruskal-Wallis across the rows' completed trials (JSON only)
    factor_p: float | None = None  # the model's permutation test: does the factor matter at all
    importance: float | None = None
    confounded: bool = True     # measured from adaptively sampled search trials only
    condition: bool = False     # a condition the space sweeps (CONDITIONS), not a tuned factor

    @property
    def kind(self) -> str:
        if self.condition:
            return "condition, swept"
        if self.scale.categorical:
            return "categorical"
        return "log-binned" if self.scale.log else "binned"


def t_interval(mean: pd.Series, std: pd.Series, count: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The t-distribution 95% interval of the mean (NaN where fewer than two values)."""
    dof = (count - 1).where(count > 1)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * std / np.sqrt(count)
    return mean - half, mean + half


def effect_rows(frame: pd.DataFrame, name: str, scale: Scale, maximize: bool,
                marginal: pd.DataFrame | None = None,
                bounds: tuple[float, float] = (-np.inf, np.inf),
                seconds: pd.Series | None = None) -> pd.DataFrame:
    """The effect table of one parameter over the finished trials in ``frame``, with the model's
    ``marginal`` rows (``marginal.marginal_effects``) beside the completed trials' statistics."""
    values = frame["hp." + name]
    present = values.notna()
    frame, values = frame[present], values[present]
    keys, order = group_keys(values, scale)
    data = pd.DataFrame({"key": keys.to_numpy(), "state": frame["state"].to_numpy(),
                         "objective": frame["value"].to_numpy(),
                         "sec": frame["steady_sec_per_epoch"].to_numpy(),
                         "ms": frame["steady_ms_per_step"].to_numpy(),
                         "first": frame["first_epoch_s"].to_numpy(), "gap": frame["gap"].to_numpy(),
                         "diverged": frame["diverged"].to_numpy()})
    data = data[data["key"].notna()]
    by_key = data.groupby("key", sort=False, dropna=True)
    complete = data[data["state"] == "COMPLETE"].groupby("key", sort=False)
    objective = complete["objective"]
    table = pd.DataFrame({
        "trials": by_key.size(),
        "complete": objective.count(),
        "mean": objective.mean(),
        "std": objective.std(),
        "median": objective.median(),
        "best": objective.max() if maximize else objective.min(),
        "sec_per_epoch": by_key["sec"].median(),
        "ms_per_step": by_key["ms"].median(),
        "first_epoch_s": by_key["first"].median(),
        "gap": complete["gap"].mean(),
        "pruned": by_key["state"].agg(lambda s: int((s == "PRUNED").sum())),
        "failed": by_key["state"].agg(lambda s: int((s == "FAIL").sum())),
        "diverged": by_key["diverged"].sum(),
    })
    table = table.reindex([k for k in order if k in table.index])
    table["complete"] = table["complete"].fillna(0).astype(int)
    for column in ("trials", "pruned", "failed", "diverged"):
        table[column] = table[column].fillna(0).astype(int)
    low, high = t_interval(table["mean"], table["std"], table["complete"])
    table["ci_low"], table["ci_high"] = low.clip(*bounds), high.clip(*bounds)
    marginal = marginal if marginal is not None else pd.DataFrame(columns=MARGINAL_COLUMNS)
    marginal = marginal.drop(index=[k for k in marginal.index if isinstance(k, str) and k == ABSENT])
    by_repr = {repr(k): k for k in marginal.index}
    for column in MARGINAL_COLUMNS:
        table[column] = [marginal.at[by_repr[repr(k)], column] if repr(k) in by_repr else np.nan
                         for k in table.index]
    table["modelled"] = table["modelled"].fillna(0).astype(int)
    seconds = seconds if seconds is not None else pd.Series(dtype=float)
    by_repr = {repr(k): v for k, v in seconds.items()}
    table["sec_per_epoch_model"] = [by_repr.get(repr(k), np.nan) for k in table.index]
    table["worse_than_best"] = table["worse_than_best"].fillna(False).astype(bool)
    table["row_verdict"] = table["row_verdict"].where(table["row_verdict"].notna(), "too few trials")
    table = table.rename_axis("value").reset_index()
    return table[ROW_COLUMNS]


def _span(labels: list[str], scale: Scale) -> str:
    """Adjacent bins as one range ("1e-4..1e-3" + "1e-3..1e-2" -> "1e-4..1e-2")."""
    if not scale.categorical and labels:
        return f"{labels[0].split('..')[0]}..{labels[-1].split('..')[1]}"
    return ", ".join(labels)


def _runs(positions: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _where(labels: list[str], positions: list[int], total: int, scale: Scale) -> str:
    """Plain words for a set of rows: "1e-2 and above", "0.1..0.3", "sgd, adagrad"."""
    if scale.ordered and positions and len(_runs(positions)) == 1 and total > 1:
        start, end = positions[0], positions[-1]
        first = labels[start].split("..")[0] if not scale.categorical else labels[start]
        last = labels[end].split("..")[-1] if not scale.categorical else labels[end]
        if end == total - 1 and start > 0:
            return f"{first} and above"
        if start == 0 and end < total - 1:
            return f"{last} and below" if scale.categorical else f"below {last}"
    return ", ".join(_span([labels[p]], scale) for p in positions)


def differ_p_value(frame: pd.DataFrame, name: str, scale: Scale) -> float | None:
    """Kruskal-Wallis p-value: do the rows' completed objective values differ at all?"""
    complete = frame[(frame["state"] == "COMPLETE") & frame["hp." + name].notna()]
    keys, _ = group_keys(complete["hp." + name], scale)
    groups = [g.to_numpy() for _, g in complete["value"].groupby(keys.to_numpy(), sort=False)
              if len(g) >= 2]
    if len(groups) < 2:
        return None
    try:
        return float(stats.kruskal(*groups).pvalue)
    except ValueError:  # every value identical
        return 1.0


def _failure(rows: pd.DataFrame, labels: list[str], scale: Scale) -> tuple[str, list[int]]:
    """Where trials fail or diverge (at least ``FAILING_SHARE`` of a row's trials, two or more)."""
    failing = [i for i, r in enumerate(rows.itertuples()) if r.failed >= 2
               and r.failed >= FAILING_SHARE * r.trials]
    if not failing:
        return "", []
    failed = int(rows["failed"].iloc[failing].sum())
    trials = int(rows["trials"].iloc[failing].sum())
    diverged = int(rows["diverged"].iloc[failing].sum())
    verb = "diverge" if diverged * 2 >= failed else "fail"
    return f"{_where(labels, failing, len(rows), scale)} {verb} in {failed}/{trials} trials", failing


def _interval(low: float, high: float, signed: bool = False) -> str:
    form = "+.3g" if signed else ".3g"
    return f"95% {low:{form}}..{high:{form}}"


def verdict(name: str, rows: pd.DataFrame, scale: Scale, maximize: bool,
            factor_p: float | None = None) -> str:
    """One line from the model's rows. First whether the factor matters at all (``factor_p``, the
    model's permutation test, below ``FACTOR_ALPHA``; without one, whether a value is worse than
    the best): if not, no effect detected. If it does: the best value with its marginal mean and
    interval and the values clearly worse than it (the interval of the difference excludes 0, at
    95% for all the factor's values together), or that no single value is; or too few trials;
    "widen the range" when the best value helps and sits at an end of an ordered range; where
    trials fail or diverge."""
    labels = [param_value(v) for v in rows["value"]]
    failure, _ = _failure(rows, labels, scale)
    judged = [i for i, v in enumerate(rows["row_verdict"]) if v != "too few trials"]
    if len(judged) < 2:
        modelled = int(rows["modelled"].sum())
        text = (f"{name}: too few trials to say ({modelled} completed or pruned trials modelled; "
                f"each value needs {MIN_MODEL_TRIALS})")
        return f"{text}; {failure}" if failure else text
    means = rows["model_mean"]
    best = max(judged, key=lambda i: means.iloc[i] if maximize else -means.iloc[i])
    helps = [i for i in judged if rows["row_verdict"].iloc[i] == "helps"]
    worse = [i for i in judged if i != best and bool(rows["worse_than_best"].iloc[i])]
    tested = f"permutation p={factor_p:.2g}" if factor_p is not None else None
    matters = factor_p is not None and factor_p < FACTOR_ALPHA
    if factor_p is not None and not matters:
        worse = []  # the factor test comes first: values are compared only in a factor that matters
    r = rows.iloc[best]
    best_text = f"best {labels[best]} (mean {r.model_mean:.3g}, {_interval(r.model_low, r.model_high)})"
    if not worse and not matters:
        span = f"{means.iloc[judged].min():.3g}..{means.iloc[judged].max():.3g}"
        text = (f"{name}: no effect detected (model means {span}; "
                + (f"{tested}; " if tested else "")
                + "no value clearly worse than the best, at 95% for all values together)")
        hurts = [i for i in judged if rows["row_verdict"].iloc[i] == "hurts"]
        leaning = [f"{labels[i]} {rows['row_verdict'].iloc[i]} ({rows['effect'].iloc[i]:+.3g}, "
                   f"{_interval(rows['effect_low'].iloc[i], rows['effect_high'].iloc[i], True)})"
                   for i in sorted(helps + hurts)]
        if leaning:  # apart from the factor's average, though not from its best value
            text += f"; against the average of its values: {', '.join(leaning)}"
        return f"{text}; {failure}" if failure else text
    if not worse:  # the factor matters as a whole; no single value is apart from the best
        text = (f"{name}: matters ({tested}); {best_text}; no single value clearly worse than it "
                "at 95% for all values together")
        span = f"{means.iloc[judged].min():.3g}..{means.iloc[judged].max():.3g}"
        text += f" (model means {span})"
    else:
        text = f"{name}: {best_text}"
        listed = ", ".join(f"{labels[i]} ({rows['vs_best'].iloc[i]:+.3g}, "
                           f"{_interval(rows['vs_best_low'].iloc[i], rows['vs_best_high'].iloc[i], True)})"
                           for i in worse)
        text += f"; worse: {listed}" + (f" ({tested})" if tested else "")
    ends = (judged[0], judged[-1])
    if scale.ordered and best in helps and best in ends and len(rows) > 2:
        text += f"; the best value is at the end of the range tried ({labels[best]}): widen the range"
    return f"{text}; {failure}" if failure else text


def param_effect(frame: pd.DataFrame, name: str, scale: Scale, maximize: bool,
                 marginal: pd.DataFrame | None = None,
                 bounds: tuple[float, float] = (-np.inf, np.inf),
                 seconds: pd.Series | None = None) -> ParamEffect:
    rows = effect_rows(frame, name, scale, maximize, marginal, bounds, seconds)
    p_value = differ_p_value(frame, name, scale)
    factor_p = marginal.attrs.get("factor_p") if marginal is not None else None
    if factor_p is not None and factor_p >= FACTOR_ALPHA:  # no value helps in a factor that does not matter
        rows["row_verdict"] = rows["row_verdict"].replace({"helps": "no effect detected",
                                                           "hurts": "no effect detected"})
    return ParamEffect(name, scale, rows, verdict(name, rows, scale, maximize, factor_p), p_value,
                       factor_p=factor_p)
