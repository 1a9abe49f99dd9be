"""Effects measured by ablation trials (tagged ``ablation = {"param", "value", "repeat"}``), kept
apart from the search: each value's mean against the center (the best configuration's value),
with a t-interval built on the seed noise of the repeats (pooled standard deviation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from search.analysis.effects import CONFIDENCE
from search.console.format import param_value

ROW_COLUMNS = ["value", "trials", "complete", "failed", "mean", "std", "effect", "effect_low",
               "effect_high"]


@dataclass
class AblationEffect:
    name: str
    center: object
    rows: pd.DataFrame          # ROW_COLUMNS, one row per ablated value
    noise_sd: float | None      # pooled standard deviation of the repeats (seed noise)
    verdict: str


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


def ablation_effect(trials: pd.DataFrame, name: str, center, maximize: bool) -> AblationEffect:
    keys = trials["ablation_value"].map(lambda v: repr(v))
    groups = []
    for _, group in trials.groupby(keys, sort=False):
        value = group["ablation_value"].iloc[0]
        done = group.loc[group["state"] == "COMPLETE", "value"].astype(float)
        groups.append({"value": value, "trials": len(group), "complete": len(done),
                       "failed": int((group["state"] == "FAIL").sum()),
                       "mean": done.mean() if len(done) else np.nan,
                       "std": done.std() if len(done) > 1 else np.nan,
                       "_ss": float(((done - done.mean()) ** 2).sum()) if len(done) else 0.0})
    try:
        groups.sort(key=lambda g: g["value"])
    except TypeError:
        groups.sort(key=lambda g: str(g["value"]))
    rows = pd.DataFrame(groups)
    dof = int((rows["complete"] - 1).clip(lower=0).sum())
    noise = float(np.sqrt(rows["_ss"].sum() / dof)) if dof > 0 else None
    reference = next((g for g in groups if _same(g["value"], center)), None)
    rows["effect"] = rows["mean"] - (reference["mean"] if reference else np.nan)
    if reference and noise is not None and reference["complete"]:
        n_ref = reference["complete"]
        se = noise * np.sqrt(1.0 / rows["complete"].where(rows["complete"] > 0) + 1.0 / n_ref)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se
        rows["effect_low"], rows["effect_high"] = rows["effect"] - half, rows["effect"] + half
    else:
        rows["effect_low"] = rows["effect_high"] = np.nan
    rows = rows[ROW_COLUMNS]
    return AblationEffect(name, center, rows, noise, _verdict(name, center, rows, noise, maximize))


def _verdict(name: str, center, rows: pd.DataFrame, noise: float | None, maximize: bool) -> str:
    head = f"{name} around {param_value(center)}"
    if noise is None:
        return (f"{head}: no value has two completed repeats, so no seed-noise estimate "
                "(ablate with --repeats 2 or more)")
    better, worse, within, failing, unmeasured = [], [], [], [], []
    for r in rows.itertuples():
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
    return "; ".join(parts)


def ablation_effects(frame: pd.DataFrame, best_values: dict, maximize: bool) -> list[AblationEffect]:
    """One effect per ablated parameter, from the finished trials tagged as ablation."""
    tagged = frame[frame["ablation_param"].notna()]
    effects = []
    for name, trials in tagged.groupby("ablation_param", sort=True):
        others = tagged[tagged["ablation_param"] != name]
        effects.append(ablation_effect(trials, str(name), _center(trials, name, others, best_values),
                                       maximize))
    return effects
