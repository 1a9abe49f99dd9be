"""What a study looks like right now: trials by state, budget, best trial, a trials table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from search.config import StudyConfig
from storage.trial_reader import read_trials
from storage.workers import WorkerRow

RETRY_HISTORY = "retry_history"  # Optuna's RetryHeartbeatStaleTrialCallback's system attribute


@dataclass
class StudySnapshot:
    study_name: str
    config: StudyConfig
    budget: int
    claimed: int
    states: dict[str, int]
    trials: list[FrozenTrial] = field(repr=False)
    best: FrozenTrial | None = None
    workers: list[WorkerRow] = field(default_factory=list)  # every worker the study has had
    deadline: float | None = None  # seconds since the epoch

    @property
    def live_workers(self) -> list[WorkerRow]:
        return [w for w in self.workers if w.live(self.config.grace_s)]

    @property
    def finished(self) -> int:
        """Finished trials that count against the budget (not those re-run as a copy)."""
        again = requeued_as(self.trials)
        return sum(1 for t in self.trials if t.state.is_finished() and t.number not in again)

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
        again = requeued_as(self.trials)
        return {
            "study": self.study_name,
            "objective": self.config.objective,
            "direction": self.config.direction,
            "budget": self.budget,
            "states": self.states,
            "deadline": self.deadline,
            "best": best,
            "workers": [dict(w.to_dict(), live=w.live(self.config.grace_s)) for w in self.workers],
            "trials": [_trial_dict(t, again.get(t.number)) for t in self.trials],
        }


def hp_values(trial: FrozenTrial) -> dict:
    """The hyperparameter values a trial used (Optuna's params where the runner recorded none)."""
    return dict(trial.user_attrs.get("hp_values") or trial.params)


def requeued_as(trials: list[FrozenTrial]) -> dict[int, int]:
    """Trial number -> the number of the copy that re-ran it (after a lost worker or Ctrl-C)."""
    again = {}
    for t in trials:
        history = t.system_attrs.get(RETRY_HISTORY) or []
        if history:
            again[history[-1]] = t.number
    return again


def fail_reason(trial: FrozenTrial, requeued: int | None = None) -> str | None:
    """Why a trial failed: the runner's reason, or a lost worker (failed for a stale heartbeat)."""
    reason = trial.user_attrs.get("fail_reason")
    if trial.state == TrialState.FAIL and reason is None:
        reason = "worker lost (no heartbeat)"
    if trial.state == TrialState.FAIL and requeued is not None:
        reason = f"{reason}; re-run as trial {requeued}"
    return reason


def attempt(trial: FrozenTrial) -> int:
    """1 for a first run, 2 for its first retry, ..."""
    return len(trial.system_attrs.get(RETRY_HISTORY) or []) + 1


def _trial_dict(trial: FrozenTrial, requeued: int | None = None) -> dict:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": hp_values(trial),
        "train_seconds": trial.user_attrs.get("train_seconds"),
        "ms_per_step": trial.user_attrs.get("ms_per_step"),
        "attempt": attempt(trial),
        "fail_reason": fail_reason(trial, requeued),
    }


def trials_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    rows = []
    again = requeued_as(trials)
    for t in trials:
        row = _trial_dict(t, again.get(t.number))
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
    trials = read_trials(handle.storage, study_id)
    config = StudyConfig.from_dict(record.config)
    workers = handle.workers.list(name) if handle.workers is not None else []
    return StudySnapshot(
        study_name=name,
        config=config,
        budget=record.budget,
        claimed=record.claimed,
        states=dict(Counter(t.state.name for t in trials)),
        trials=trials,
        best=best_trial(trials, config.direction),
        workers=workers,
        deadline=record.deadline,
    )


