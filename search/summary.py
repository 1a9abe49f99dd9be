"""What a study looks like right now: trials by state, budget, best trial, a trials table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from search.config import StudyConfig


@dataclass
class StudySnapshot:
    study_name: str
    config: StudyConfig
    budget: int
    claimed: int
    states: dict[str, int]
    trials: list[FrozenTrial] = field(repr=False)
    best: FrozenTrial | None = None

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.states.items() if state in ("COMPLETE", "PRUNED", "FAIL"))

    @property
    def budget_left(self) -> int:
        return max(0, self.budget - self.claimed)

    def trials_frame(self) -> pd.DataFrame:
        """One row per trial: number, state, value, seconds, hyperparameter values, failure reason."""
        return trials_frame(self.trials)

    def to_dict(self) -> dict:
        best = None
        if self.best is not None:
            best = {"number": self.best.number, "value": self.best.value,
                    "params": hp_values(self.best),
                    "metrics": self.best.user_attrs.get("metrics", {})}
        return {
            "study": self.study_name,
            "objective": self.config.objective,
            "direction": self.config.direction,
            "budget": self.budget,
            "states": self.states,
            "best": best,
            "trials": [_trial_dict(t) for t in self.trials],
        }


def hp_values(trial: FrozenTrial) -> dict:
    """The hyperparameter values a trial used (Optuna's params where the runner recorded none)."""
    return dict(trial.user_attrs.get("hp_values") or trial.params)


def _trial_dict(trial: FrozenTrial) -> dict:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": hp_values(trial),
        "train_seconds": trial.user_attrs.get("train_seconds"),
        "ms_per_step": trial.user_attrs.get("ms_per_step"),
        "fail_reason": trial.user_attrs.get("fail_reason"),
    }


def trials_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    rows = []
    for t in trials:
        row = _trial_dict(t)
        params = row.pop("params")
        row.update({f"hp.{k}": v for k, v in params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def best_trial(trials: list[FrozenTrial], direction: str) -> FrozenTrial | None:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    pick = max if direction == "max" else min
    return pick(complete, key=lambda t: t.value)


def snapshot(handle, study_id: int | None = None) -> StudySnapshot:
    """Read the study's state from the store (one query for the trials, one for the record)."""
    name = handle.record.study_name
    if study_id is None:
        study_id = handle.storage.get_study_id_from_name(name)
    record = handle.records.get(name)
    trials = handle.storage.get_all_trials(study_id, deepcopy=False)
    config = StudyConfig.from_dict(record.config)
    return StudySnapshot(
        study_name=name,
        config=config,
        budget=record.budget,
        claimed=record.claimed,
        states=dict(Counter(t.state.name for t in trials)),
        trials=trials,
        best=best_trial(trials, config.direction),
    )


