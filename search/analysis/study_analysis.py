"""``analyze(study)``: the study in one object: overview, effect tables, importances, ablation."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.study import StudyDirection

from search import trial_attrs
from search.analysis.ablation_effects import AblationEffect, ablation_effects
from search.analysis.interaction import InteractionEffect, interaction_effects
from search.analysis.effects import ParamEffect, param_effect
from search.analysis.frame import FINISHED, frame_from_trials, hp_columns
from search.analysis.importance import Importances, importances
from search.analysis.marginal import marginal_effects, metric_bounds, time_effects
from search.analysis.scales import group_keys
from search.analysis.scales import scales as scales_of
from search.analysis.view import search_view
from search.console.format import param_value
from search.errors import SearchError

FINISHED_STATES = [s.name for s in FINISHED]
TOP_FAILURES = 5


CONDITION_COLUMNS = ["value", "trials", "complete", "pruned", "failed", "best", "best_trial",
                     "mean", "model_mean", "model_low", "model_high", "sec_per_epoch", "ms_per_step",
                     "first_epoch_s"]


@dataclass
class Condition:
    """A swept factor: per value, its best trial and its trials' mean and time cost."""
    name: str
    rows: pd.DataFrame      # CONDITION_COLUMNS
    best_params: dict       # value (as shown) -> the best trial's configuration under it


@dataclass
class Analysis:
    study_name: str
    objective: str
    direction: str                      # "maximize" or "minimize"
    overview: dict
    effects: list[ParamEffect]          # search trials only, most important first
    importance: Importances
    ablation: list[AblationEffect]      # ablation trials only
    notes: list[str]
    conditions: list[Condition]         # the space's CONDITIONS, swept
    frame: pd.DataFrame = field(repr=False)  # one row per trial (see frame.COLUMNS)
    trials: list = field(repr=False, default_factory=list)  # the study's FrozenTrials, read once
    view: optuna.Study | None = field(repr=False, default=None)  # search trials, real values
    interactions: list[InteractionEffect] = field(default_factory=list)  # two-factor ablation grids

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def effect(self, name: str) -> ParamEffect:
        for effect in self.effects:
            if effect.name == name:
                return effect
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-ready: the overview, one object per parameter (rows, verdict, importance), the
        importance method, ablation effects and notes."""
        return _plain({
            "study": self.study_name,
            "objective": self.objective,
            "direction": self.direction,
            "overview": self.overview,
            "importance": {"method": self.importance.method, "trials": self.importance.trials,
                           "note": self.importance.note},
            "parameters": [{
                "name": e.name, "kind": e.kind, "log": e.scale.log, "importance": e.importance,
                "verdict": e.verdict, "p_value": e.p_value, "factor_p": e.factor_p,
                "confounded": e.confounded,
                "rows": e.rows.to_dict(orient="records"),
            } for e in self.effects],
            "conditions": [{"name": c.name, "rows": c.rows.to_dict(orient="records"),
                            "best_params": c.best_params} for c in self.conditions],
            "ablation": [{
                "name": a.name, "center": a.center, "held": a.held, "chance": a.chance,
                "noise_sd": a.noise_sd, "verdict": a.verdict,
                "rows": a.rows.to_dict(orient="records"),
            } for a in self.ablation],
            "interactions": [{
                "pair": i.pair, "center": i.center, "held": i.held, "p_value": i.p_value,
                "verdict": i.verdict, "best_per_second": i.best_per_second,
                "cells": i.cells.to_dict(orient="records"),
            } for i in self.interactions],
            "notes": self.notes,
        })


def _plain(value):
    """Python scalars, None for NaN/NaT/missing, recursively (json.dumps-ready)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT or (not isinstance(value, (str, bool, int, float))
                                              and value is not None and pd.api.types.is_scalar(value)
                                              and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _direction(study: optuna.Study) -> str:
    try:
        direction = study.direction
    except RuntimeError:
        raise SearchError(f"study {study.study_name!r} has several objectives: analyze supports "
                          "single-objective studies only") from None
    return "maximize" if direction == StudyDirection.MAXIMIZE else "minimize"


def _best(frame: pd.DataFrame, maximize: bool) -> pd.Series | None:
    complete = frame[(frame["state"] == "COMPLETE") & frame["value"].notna()]
    if complete.empty:
        return None
    return complete.loc[complete["value"].idxmax() if maximize else complete["value"].idxmin()]


def _hp_values(row: pd.Series) -> dict:
    return {k[3:]: v for k, v in row.items()
            if k.startswith("hp.") and not (v is None or (isinstance(v, float) and math.isnan(v)))}


def _overview(study, trials, frame: pd.DataFrame, maximize: bool, budget: int | None) -> dict:
    states = dict(Counter(frame["state"]))
    finished = int(frame["state"].isin(FINISHED_STATES).sum())
    best = _best(frame, maximize)  # the best completed trial, as status, best and Optuna say
    best_search = _best(frame[frame["ablation_param"].isna()], maximize)
    baseline = frame[frame["baseline"]]
    reasons = frame["fail_reason"].dropna().value_counts().head(TOP_FAILURES)
    by_number = {t.number: t for t in trials}

    def described(row):
        if row is None:
            return None
        trial = by_number.get(int(row["number"]))
        return {"number": int(row["number"]), "value": float(row["value"]), "params": _hp_values(row),
                "metrics": dict(trial.user_attrs.get(trial_attrs.METRICS) or {}) if trial else {},
                "epochs": row["epochs"], "train_seconds": row["train_seconds"],
                "ablation": row["ablation_param"] if isinstance(row["ablation_param"], str) else None}

    same = best is not None and best_search is not None and best["number"] == best_search["number"]
    return {
        "trials": len(frame),
        "states": states,
        "finished": finished,
        "budget": budget,
        "budget_used": (finished / budget) if budget else None,
        "search_trials": int(frame["ablation_param"].isna().sum()),
        "ablation_trials": int(frame["ablation_param"].notna().sum()),
        "train_seconds": _recorded_sum(frame["train_seconds"]),  # None: a study we did not run
        "trial_seconds": _recorded_sum(frame["trial_seconds"]),
        "best": described(best),
        "best_search": None if same else described(best_search),  # when an ablation trial is best
        "baseline": None if baseline.empty else {
            "number": int(baseline["number"].iloc[0]), "state": baseline["state"].iloc[0],
            "value": baseline["value"].iloc[0]},
        "failure_reasons": {str(k): int(v) for k, v in reasons.items()},
    }


def objective_curves(trials, objective: str) -> dict[int, list]:
    """Trial number -> the objective per epoch of each completed or pruned trial (its recorded
    history; a trial without one: its value at its last epoch)."""
    curves = {}
    for t in trials:
        if t.state.name not in ("COMPLETE", "PRUNED") or t.value is None:
            continue
        curve = (t.user_attrs.get(trial_attrs.HISTORY) or {}).get(objective)
        if not curve:
            epochs = t.user_attrs.get(trial_attrs.EPOCHS)
            curve = [None] * ((epochs if isinstance(epochs, int) and epochs > 0 else 1) - 1) + [t.value]
        curves[t.number] = list(curve)
    return curves


def confounding_note(study_name: str, unablated: list[str]) -> str:
    names = ", ".join(unablated)
    return (f"Search effects ({names}) are confounded: the sampler tried promising values more "
            "often and together with other good values, so each table also reflects the other "
            "parameters. For a controlled comparison, run "
            f"`search ablate --study {study_name}` (one factor at a time around the best "
            "configuration, repeated over seeds).")


def swept_conditions(trials) -> list[str]:
    """The names of the conditions the trials ran under (``trial_attrs.CONDITION``), in order."""
    names: dict[str, None] = {}
    for t in trials:
        for name in t.user_attrs.get(trial_attrs.CONDITION) or {}:
            names.setdefault(name)
    return list(names)


def condition_summary(effect: ParamEffect, search: pd.DataFrame, maximize: bool) -> Condition:
    """Per value of a swept factor: its best trial (number, value, configuration) and its trials'
    completed and model means and time cost, from the effect table."""
    rows = effect.rows.copy()
    complete = search[(search["state"] == "COMPLETE") & search["value"].notna()]
    keys, _ = group_keys(complete["hp." + effect.name], effect.scale)
    best_trial, best_params = [], {}
    for value in rows["value"]:
        mine = complete[[repr(k) == repr(value) for k in keys]]
        if mine.empty:
            best_trial.append(None)
            continue
        row = mine.loc[mine["value"].idxmax() if maximize else mine["value"].idxmin()]
        best_trial.append(int(row["number"]))
        best_params[param_value(value)] = _hp_values(row)
    rows["best_trial"] = best_trial
    return Condition(effect.name, rows[CONDITION_COLUMNS], best_params)


def all_trials(study: optuna.Study) -> list:
    """The study's trials: through ``search.storage.trial_reader`` (several times faster than
    Optuna's ORM reader) where the store is a database (Optuna's ``RDBStorage``, cached or not),
    else ``study.get_trials``."""
    from search.storage.trial_reader import read_trials

    backend = getattr(study._storage, "_backend", study._storage)
    if isinstance(backend, optuna.storages.RDBStorage):
        return read_trials(backend, study._study_id)
    return study.get_trials(deepcopy=False)


def analyze(study: optuna.Study, objective: str = "val_accuracy", params: list[str] | None = None,
            space=None, *, budget: int | None = None, trials: list | None = None,
            fixed: list[str] | None = None) -> Analysis:
    """Analyze a study's trials (read once). ``space``: the study's discovered
    ``keras_tuner.HyperParameters`` (or its ``get_config()``), which tells categorical from
    continuous and log-scaled parameters; ``budget``: the study's trial budget, if known;
    ``trials``: the study's trials when the caller read them already (:func:`all_trials`
    otherwise); ``fixed``: the parameters fixed with ``--set`` (one value: not an effect)."""
    direction = _direction(study)
    maximize = direction == "maximize"
    if trials is None:
        trials = all_trials(study)
    frame = frame_from_trials(trials, objective)
    finished = frame[frame["state"].isin(FINISHED_STATES)]
    if finished.empty:
        states = ", ".join(f"{n} {s.lower()}" for s, n in Counter(frame["state"]).items()) or "no trials"
        raise SearchError(f"study {study.study_name!r} has no finished trials yet ({states}): "
                          "nothing to analyze; run `search start` or `search worker` first")
    names = [n for n in hp_columns(finished) if finished["hp." + n].notna().any()
             and n not in set(fixed or ())]
    if params:
        unknown = [p for p in params if p not in names]
        if unknown:
            raise SearchError(f"unknown parameter(s) {', '.join(unknown)}: study "
                              f"{study.study_name!r} has {', '.join(names) or 'none'}")
        names = list(params)
    search = finished[finished["ablation_param"].isna()]
    scales = scales_of(finished, names, trials, space)
    searched = [n for n in names if search["hp." + n].notna().any()]
    view = search_view(search, searched, scales, maximize)
    ranked = importances(view, searched)
    ablation = ablation_effects(finished, _hp_values(b) if (b := _best(search, maximize)) is not None
                                else {}, maximize, objective)
    ablated = {a.name for a in ablation}
    marginal = marginal_effects(search, objective_curves(trials, objective), searched, scales,
                                maximize, objective)
    bounds = metric_bounds(objective, search["value"].to_numpy(dtype=float))
    seconds = time_effects(search, searched, scales)
    effects = []
    for name in searched:
        effect = param_effect(search, name, scales[name], maximize, marginal[name], bounds,
                              seconds[name])
        effect.importance = ranked.values.get(name)
        effect.confounded = True  # search trials, whatever an ablation measured beside them
        effects.append(effect)
    if not params:
        effects.sort(key=lambda e: -(e.importance if e.importance is not None else -1.0))
    swept = swept_conditions(trials)
    conditions = [condition_summary(e, search, maximize) for e in effects if e.name in swept]
    for effect in effects:
        effect.condition = effect.name in swept
    notes = []
    unablated = [e.name for e in effects if e.name not in ablated]
    if unablated and len(search):
        notes.append(confounding_note(study.study_name, unablated))
    complete = int((search["state"] == "COMPLETE").sum())
    if complete < 20:
        notes.append(f"Only {complete} completed search trials: intervals are wide and verdicts "
                     "tentative.")
    if ranked.note:
        notes.append(f"Importance: {ranked.note}.")
    return Analysis(study.study_name, objective, direction,
                    _overview(study, trials, frame, maximize, budget), effects, ranked, ablation,
                    notes, conditions, frame, trials, view, interaction_effects(finished, maximize))


def _recorded_sum(column: pd.Series) -> float | None:
    """The column's sum, or None where no trial recorded it (a plain Optuna study)."""
    return None if column.isna().all() else float(column.sum(skipna=True))
