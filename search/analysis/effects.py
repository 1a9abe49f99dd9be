"""Per-parameter effect tables of the search trials, and a verdict line in plain words.

A table has one row per value (categorical) or per bin (continuous; decades when log-scaled). The
objective's statistics use COMPLETE trials only (a pruned trial stopped early: its value is not
comparable); pruned, failed and diverged trials are counted per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from search.analysis.scales import Scale, group_keys
from search.console.format import param_value

ROW_COLUMNS = ["value", "trials", "complete", "mean", "ci_low", "ci_high", "median", "best",
               "sec_per_epoch", "gap", "pruned", "failed", "diverged"]
CONFIDENCE = 0.95
# A row "fails" when at least this share of its finished trials failed (and at least two did).
FAILING_SHARE = 0.5


@dataclass
class ParamEffect:
    name: str
    scale: Scale
    rows: pd.DataFrame          # ROW_COLUMNS, in display order
    verdict: str
    p_value: float | None = None  # Kruskal-Wallis across the rows' completed trials
    importance: float | None = None
    confounded: bool = True     # measured from adaptively sampled search trials only

    @property
    def kind(self) -> str:
        if self.scale.categorical:
            return "categorical"
        return "log-binned" if self.scale.log else "binned"


def t_interval(mean: pd.Series, std: pd.Series, count: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The t-distribution 95% interval of the mean (NaN where fewer than two values)."""
    dof = (count - 1).where(count > 1)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * std / np.sqrt(count)
    return mean - half, mean + half


def effect_rows(frame: pd.DataFrame, name: str, scale: Scale, maximize: bool) -> pd.DataFrame:
    """The effect table of one parameter over the finished trials in ``frame``."""
    values = frame["hp." + name]
    present = values.notna()
    frame, values = frame[present], values[present]
    keys, order = group_keys(values, scale)
    data = pd.DataFrame({"key": keys.to_numpy(), "state": frame["state"].to_numpy(),
                         "objective": frame["value"].to_numpy(),
                         "sec": frame["sec_per_epoch"].to_numpy(), "gap": frame["gap"].to_numpy(),
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
        "sec_per_epoch": by_key["sec"].mean(),
        "gap": complete["gap"].mean(),
        "pruned": by_key["state"].agg(lambda s: int((s == "PRUNED").sum())),
        "failed": by_key["state"].agg(lambda s: int((s == "FAIL").sum())),
        "diverged": by_key["diverged"].sum(),
    })
    table = table.reindex([k for k in order if k in table.index])
    table["complete"] = table["complete"].fillna(0).astype(int)
    for column in ("trials", "pruned", "failed", "diverged"):
        table[column] = table[column].fillna(0).astype(int)
    table["ci_low"], table["ci_high"] = t_interval(table["mean"], table["std"], table["complete"])
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


def verdict(name: str, rows: pd.DataFrame, scale: Scale, maximize: bool,
            p_value: float | None = None) -> str:
    """One line: where the parameter is best, what is clearly worse (95% intervals apart, and the
    rows differ at all by a Kruskal-Wallis test), where trials fail or diverge."""
    labels = [param_value(v) for v in rows["value"]]
    failing = [i for i, r in enumerate(rows.itertuples()) if r.failed >= 2
               and r.failed >= FAILING_SHARE * r.trials]
    failure = ""
    if failing:
        failed = int(rows["failed"].iloc[failing].sum())
        trials = int(rows["trials"].iloc[failing].sum())
        diverged = int(rows["diverged"].iloc[failing].sum())
        verb = "diverge" if diverged * 2 >= failed else "fail"
        failure = f"{_where(labels, failing, len(rows), scale)} {verb} in {failed}/{trials} trials"
    scored = [i for i in range(len(rows)) if rows["complete"].iloc[i] > 0 and i not in failing]
    if not scored:
        return f"{name}: no completed trials to compare" + (f"; {failure}" if failure else "")
    means = rows["mean"]
    candidates = [i for i in scored if rows["complete"].iloc[i] >= 2] or scored
    best = max(candidates, key=lambda i: means.iloc[i] if maximize else -means.iloc[i])
    low, high = rows["ci_low"].iloc[best], rows["ci_high"].iloc[best]

    def clearly_worse(i: int) -> bool:
        if maximize:
            return bool(rows["ci_high"].iloc[i] < low)
        return bool(rows["ci_low"].iloc[i] > high)

    worse = [i for i in scored if clearly_worse(i)]
    tied = [i for i in scored if i not in worse]
    if len(scored) < 2 or all(rows["complete"].iloc[i] < 2 for i in scored):
        text = f"{name}: too few completed trials per value to compare"
    elif not worse or (p_value is not None and p_value >= 1 - CONFIDENCE):
        span = f"{means.iloc[scored].min():.3g}..{means.iloc[scored].max():.3g}"
        why = ("all 95% intervals overlap" if not worse
               else f"the differences are within noise, Kruskal-Wallis p={p_value:.2g}")
        text = f"{name}: no clear effect (means {span}; {why})"
    else:
        if scale.categorical:
            best_text = ", ".join(labels[i] for i in tied)
        else:
            best_text = " and ".join(_span([labels[i] for i in run], scale) for run in _runs(tied))
        worse_text = ", ".join(f"{labels[i]} ({means.iloc[i]:.3g})" for i in worse)
        text = f"{name}: best {best_text} (mean {means.iloc[best]:.3g}); worse: {worse_text}"
    return f"{text}; {failure}" if failure else text


def param_effect(frame: pd.DataFrame, name: str, scale: Scale, maximize: bool) -> ParamEffect:
    rows = effect_rows(frame, name, scale, maximize)
    p_value = differ_p_value(frame, name, scale)
    return ParamEffect(name, scale, rows, verdict(name, rows, scale, maximize, p_value), p_value)
