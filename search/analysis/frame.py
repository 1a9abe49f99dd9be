"""Trials -> one pandas DataFrame: a row per trial, the columns every other analysis module reads.

Hyperparameters come from the ``hp_values`` user attribute (the real values the trial used; a
``reverse_log`` parameter appears under its Keras Tuner name, not Optuna's ``<name>.reverse_log_u``),
falling back to ``trial.params`` for trials the runner never touched. Their columns are named
``hp.<name>``.

Time cost: ``sec_per_epoch`` and ``ms_per_step`` average the whole fit, the first epoch (which
compiles: often ten times a later one) included; ``first_epoch_s``, ``steady_sec_per_epoch`` and
``steady_ms_per_step`` keep it apart (from the ``epoch_times`` attribute; empty for a trial that
ran one epoch or was stored before epoch times were).
"""

from __future__ import annotations

from collections.abc import Iterable

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from search import trial_attrs

HP_PREFIX = "hp."
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# The per-trial columns, in the order the CSV shows them (hyperparameters follow).
COLUMNS = [
    "number", "state", "value", "datetime_start", "datetime_complete", "duration_s",
    "epochs", "best_epoch", "train_seconds", "trial_seconds", "sec_per_epoch", "ms_per_step",
    "first_epoch_s", "steady_sec_per_epoch", "steady_ms_per_step",
    "trainable_params", "non_trainable_params", "train_metric", "val_metric", "gap",
    "baseline", "ablation_param", "ablation_value", "ablation_repeat", "ablation_center", "ablation_pair",
    "diverged", "fail_reason",
    "worker",
]


def accuracy_pair(objective: str) -> tuple[str, str]:
    """The (train, validation) accuracy metrics whose difference is the overfitting gap:
    ``X``/``val_X`` for an accuracy-like objective ``val_X``, else ``accuracy``/``val_accuracy``."""
    if objective.startswith("val_") and "acc" in objective:
        return objective[len("val_"):], objective
    return "accuracy", "val_accuracy"


def _at_best_epoch(attrs: dict, metric: str):
    metrics = attrs.get(trial_attrs.METRICS) or {}
    if metric in metrics:
        return metrics[metric]
    curve = (attrs.get(trial_attrs.HISTORY) or {}).get(metric)
    epoch = attrs.get(trial_attrs.BEST_EPOCH)
    if curve and isinstance(epoch, int) and 0 <= epoch < len(curve):
        return curve[epoch]
    return None


def _is_diverged(trial: FrozenTrial) -> bool:
    reason = trial.user_attrs.get(trial_attrs.FAIL_REASON) or ""
    return trial.state == TrialState.FAIL and ("diverged" in reason or "NaN" in reason
                                                or " is nan" in reason or " is inf" in reason)


def _row(trial: FrozenTrial, train_metric: str, val_metric: str) -> dict:
    attrs = trial.user_attrs
    start, complete = trial.datetime_start, trial.datetime_complete
    epochs, train_seconds = attrs.get(trial_attrs.EPOCHS), attrs.get(trial_attrs.TRAIN_SECONDS)
    train, val = _at_best_epoch(attrs, train_metric), _at_best_epoch(attrs, val_metric)
    ablation = attrs.get(trial_attrs.ABLATION) or {}
    worker = attrs.get(trial_attrs.WORKER) or {}
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "datetime_start": start,
        "datetime_complete": complete,
        "duration_s": (complete - start).total_seconds() if start and complete else None,
        "epochs": epochs,
        "best_epoch": trial_attrs.best_epoch(trial),
        "train_seconds": train_seconds,
        "trial_seconds": attrs.get(trial_attrs.TRIAL_SECONDS),
        "sec_per_epoch": train_seconds / epochs if epochs and train_seconds is not None else None,
        "ms_per_step": attrs.get(trial_attrs.MS_PER_STEP),
        **trial_attrs.steady_epoch_times(trial),
        "trainable_params": attrs.get(trial_attrs.TRAINABLE_PARAMS),
        "non_trainable_params": attrs.get(trial_attrs.NON_TRAINABLE_PARAMS),
        "train_metric": train,
        "val_metric": val,
        "gap": train - val if train is not None and val is not None else None,
        "baseline": bool(attrs.get(trial_attrs.BASELINE, False)),
        "ablation_param": ablation.get("param"),
        "ablation_value": ablation.get("value"),
        "ablation_repeat": ablation.get("repeat"),
        "ablation_center": ablation.get("center"),
        "ablation_pair": ablation.get("pair"),  # a two-factor grid's trial: [a, b]
        "diverged": _is_diverged(trial),
        "fail_reason": attrs.get(trial_attrs.FAIL_REASON),
        "worker": worker.get("host") if isinstance(worker, dict) else None,
    }
    values = attrs.get(trial_attrs.HP_VALUES) or trial.params
    for name, value in values.items():
        row[HP_PREFIX + name] = value
    return row


def frame_from_trials(trials: Iterable[FrozenTrial], objective: str = "val_accuracy") -> pd.DataFrame:
    """One row per trial (any state); see ``COLUMNS`` and the ``hp.<name>`` columns."""
    train_metric, val_metric = accuracy_pair(objective)
    rows = [_row(t, train_metric, val_metric) for t in trials]
    frame = pd.DataFrame(rows, columns=None if rows else COLUMNS)
    hp_columns = sorted(c for c in frame.columns if c.startswith(HP_PREFIX))
    frame = frame.reindex(columns=COLUMNS + hp_columns)
    for column in ("value", "duration_s", "train_seconds", "trial_seconds", "sec_per_epoch",
                   "ms_per_step", "first_epoch_s", "steady_sec_per_epoch", "steady_ms_per_step",
                   "train_metric", "val_metric", "gap"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in ("epochs", "best_epoch", "trainable_params", "non_trainable_params"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    frame["baseline"] = frame["baseline"].fillna(False).astype(bool)
    frame["diverged"] = frame["diverged"].fillna(False).astype(bool)
    return frame.sort_values("number", kind="stable").reset_index(drop=True)


def hp_columns(frame: pd.DataFrame) -> list[str]:
    """The hyperparameter names the frame holds (without the ``hp.`` prefix)."""
    return [c[len(HP_PREFIX):] for c in frame.columns if c.startswith(HP_PREFIX)]


def trials_frame(study: optuna.Study, objective: str = "val_accuracy") -> pd.DataFrame:
    """The study's trials as a DataFrame for CSV export: number, state, value, times, epochs,
    seconds, parameter counts, overfitting gap, ablation tag, failure reason, ``hp.<name>``."""
    return frame_from_trials(study.get_trials(deepcopy=False), objective)
