"""Effects measured by ablation trials (tagged ``ablation = {"param", "value", "repeat"}``), kept
apart from the search: each value's mean against the center (the best configuration's value),
with a Welch t-interval built on the seed noise of that value's and the center's own repeats (a
value with a single completed repeat borrows the pooled standard deviation of all). Each effect
carries the configuration the other factors were held at, the time per value (steady seconds per
epoch, the compiling first epoch apart), and, for an accuracy objective over a known number of
classes, the chance level (1/classes) with the repeats stuck at it ("stuck at chance in k of n")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from search.analysis.effects import CONFIDENCE
from search.analysis.marginal import metric_bounds
from search.console.format import param_value

ROW_COLUMNS = ["value", "trials", "complete", "failed", "mean", "std", "effect", "effect_low",
               "effect_high", "at_chance", "sec_per_epoch", "ms_per_step", "first_epoch_s"]
CLASS_PARAMS = ("classes", "num_classes", "n_classes")
CHANCE_MARGIN = 1.25  # a repeat within 25% of chance accuracy (1/classes) is stuck at chance


@dataclass
class AblationEffect:
    name: str
    center: object
    rows: pd.DataFrame          # ROW_COLUMNS, one row per ablated value
    noise_sd: float | None      # pooled standard deviation of the repeats (seed noise)
    verdict: str
    held: dict = field(default_factory=dict)  # the other factors' values (the center configuration)
    chance: float | None = None  # chance accuracy (1/classes), when the classes are known


def _center(trials: pd.DataFrame, name: str, others: pd.DataFrame, best_values: dict):
    """The value the other parameters' ablations held ``name`` at (the best configuration's)."""
    tagged = trials["ablation_center"].dropna()
    if len(tagged):
        return tagged.iloc[0]
    held = others["hp." + name].dropna() if "hp." + name in others else pd.Series(dtype=object)
    if len(held):
        return held.mode().iloc[0]
    return best_values.get(name)


def _same(a, b) -> bool:
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0))
    return a == b


def _held(trials: pd.DataFrame, name: str) -> dict:
    """The other factors' values in this parameter's ablation trials (the center configuration)."""
    columns = [c for c in trials.columns if c.startswith("hp.") and c != "hp." + name]
    held = {}
    for column in columns:
        values = trials[column].dropna()
        if len(values):
            value = values.iloc[0]
            held[column[3:]] = value.item() if isinstance(value, np.generic) else value
    return held


def chance_level(objective: str, held: dict, name: str, value) -> float | None:
    """1/classes for an accuracy objective when the configuration names its number of classes."""
    if "acc" not in objective.lower():
        return None
    for key in CLASS_PARAMS:
        classes = value if name == key else held.get(key)
        if isinstance(classes, (int, float, np.number)) and not isinstance(classes, bool) and classes > 1:
            return 1.0 / float(classes)
    return None


def _welch(mean_a, sd_a, n_a, mean_b, sd_b, n_b, pooled: float | None):
    """The 95% Welch interval of ``mean_a - mean_b``; a side with one value uses ``pooled``, and
    so do both when neither side's repeats differ at all (two values each stuck at one accuracy
    carry no noise estimate of their own)."""
    if not n_a or not n_b:
        return np.nan, np.nan
    sd_a = sd_a if n_a > 1 and np.isfinite(sd_a) else pooled
    sd_b = sd_b if n_b > 1 and np.isfinite(sd_b) else pooled
    if sd_a is None or sd_b is None:
        return np.nan, np.nan
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    if va + vb == 0 and pooled:  # both sides' repeats identical (e.g. both at chance): no noise
        va, vb = pooled ** 2 / n_a, pooled ** 2 / n_b  # seen here, so the pooled seed noise
    se = math.sqrt(va + vb)
    effect = mean_a - mean_b
    if se == 0:
        return effect, effect
    dof_a, dof_b = max(n_a - 1, 1), max(n_b - 1, 1)
    dof = (va + vb) ** 2 / ((va ** 2 / dof_a if va else 0) + (vb ** 2 / dof_b if vb else 0) or 1e-300)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, max(dof, 1.0)) * se
    return effect - half, effect + half


def ablation_effect(trials: pd.DataFrame, name: str, center, maximize: bool,
                    objective: str = "val_accuracy") -> AblationEffect:
    held = _held(trials, name)
    keys = trials["ablation_value"].map(lambda v: repr(v))
    groups = []
    for _, group in trials.groupby(keys, sort=False):
        value = group["ablation_value"].iloc[0]
        done = group.loc[group["state"] == "COMPLETE", "value"].astype(float)
        chance = chance_level(objective, held, name, value)
        groups.append({"value": value, "trials": len(group), "complete": len(done),
                       "failed": int((group["state"] == "FAIL").sum()),
                       "mean": done.mean() if len(done) else np.nan,
                       "std": done.std() if len(done) > 1 else np.nan,
                       "at_chance": int((done <= CHANCE_MARGIN * chance).sum()) if chance else 0,
                       "sec_per_epoch": group["steady_sec_per_epoch"].median(),
                       "ms_per_step": group["steady_ms_per_step"].median(),
                       "first_epoch_s": group["first_epoch_s"].median(),
                       "_ss": float(((done - done.mean()) ** 2).sum()) if len(done) else 0.0})
    try:
        groups.sort(key=lambda g: g["value"])
    except TypeError:
        groups.sort(key=lambda g: str(g["value"]))
    rows = pd.DataFrame(groups)
    dof = int((rows["complete"] - 1).clip(lower=0).sum())
    noise = float(np.sqrt(rows["_ss"].sum() / dof)) if dof > 0 else None
    reference = next((g for g in groups if _same(g["value"], center)), None)
    rows["effect"] = (rows["mean"] - (reference["mean"] if reference else np.nan)).round(12)
    intervals = [_welch(r.mean, r.std, r.complete, reference["mean"], reference["std"],
                        reference["complete"], noise) if reference else (np.nan, np.nan)
                 for r in rows.itertuples()]
    # a difference of two means of an accuracy-like metric (in [0, 1]) lies in [-1, 1]
    bounded = metric_bounds(objective, trials["value"].to_numpy(dtype=float)) == (0.0, 1.0)
    span = 1.0 if bounded else np.inf
    rows["effect_low"] = [max(low, -span) for low, _ in intervals]
    rows["effect_high"] = [min(high, span) for _, high in intervals]
    rows = rows[ROW_COLUMNS]
    chance = chance_level(objective, held, name, center)
    return AblationEffect(name, center, rows, noise,
                          _verdict(name, center, rows, noise, maximize, held, objective),
                          held, chance)


def _verdict(name: str, center, rows: pd.DataFrame, noise: float | None, maximize: bool,
             held: dict | None = None, objective: str = "val_accuracy") -> str:
    head = f"{name} around {param_value(center)}"
    if noise is None:
        return (f"{head}: no value has two completed repeats, so no seed-noise estimate "
                "(ablate with --repeats 2 or more)")
    better, worse, within, failing, unmeasured, stuck = [], [], [], [], [], []
    for r in rows.itertuples():
        if r.at_chance:
            chance = chance_level(objective, held or {}, name, r.value)
            stuck.append(f"{param_value(r.value)} (stuck at chance {chance:.2g} in {r.at_chance} "
                         f"of {r.complete})")
        if _same(r.value, center):
            continue
        if r.failed and r.failed * 2 >= r.trials:
            failing.append(f"{param_value(r.value)} (fails {r.failed}/{r.trials})")
        elif not r.complete:
            unmeasured.append(param_value(r.value))
        elif np.isnan(r.effect_low):
            within.append(param_value(r.value))
        elif r.effect_low > 0 or r.effect_high < 0:
            good = (r.effect_low > 0) == maximize
            text = f"{param_value(r.value)} ({r.effect:+.3g}, 95% {r.effect_low:+.3g}..{r.effect_high:+.3g})"
            (better if good else worse).append(text)
        else:
            within.append(param_value(r.value))
    parts = [f"{head} (seed noise sd {noise:.2g})"]
    parts += [f"better: {', '.join(better)}"] if better else []
    parts += [f"worse: {', '.join(worse)}"] if worse else []
    parts += [f"within noise: {', '.join(within)}"] if within else []
    parts += [f"failing: {', '.join(failing)}"] if failing else []
    parts += [f"not measured (no completed trial yet): {', '.join(unmeasured)}"] if unmeasured else []
    parts += [f"collapsed: {', '.join(stuck)}"] if stuck else []
    return "; ".join(parts)


def ablation_effects(frame: pd.DataFrame, best_values: dict, maximize: bool,
                     objective: str = "val_accuracy") -> list[AblationEffect]:
    """One effect per ablated parameter, from the finished trials tagged as ablation (a
    two-factor grid's are ``search.analysis.interaction``'s)."""
    tagged = frame[frame["ablation_param"].notna() & frame["ablation_pair"].isna()]
    effects = []
    for name, trials in tagged.groupby("ablation_param", sort=True):
        others = tagged[tagged["ablation_param"] != name]
        effects.append(ablation_effect(trials, str(name), _center(trials, name, others, best_values),
                                       maximize, objective))
    return effects
