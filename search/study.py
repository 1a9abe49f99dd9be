"""The one door into a stored study: open it once per process, to read its state or to work on it.

:func:`open_study` gives the study's store, its record (configuration, space source, budget)
and worker registry; :func:`snapshot` reads what the study looks like right now (trials by
state, budget, best trial, workers). Imports no Keras, so ``search status`` and ``search
analyze`` answer in the time it takes to read the store.

``open_study(..., read_only=True)`` (``search status``, ``analyze``, ``best``) writes nothing,
and also opens a study ``search`` did not create: a plain Optuna study in the same store, or one
copied there with ``optuna.copy_study``. Such a *foreign* study has no record: its parameters
are Optuna's distributions, its objective Optuna's metric name (else ``value``) and direction,
and it has no budget, no workers and no space; what needs the space (``search ablate``,
``search best --evaluate``) says so in one line (:func:`needs_space`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import trial_attrs
from search.errors import SearchError
from search.options import StudyConfig, resolve_storage
from search.storage import (
    MissingStore,
    StudyRecord,
    StudyRecords,
    WorkerRegistry,
    WorkerRow,
    mask_url,
    open_storage,
    retrying,
    url_of,
)
from search.storage.trial_reader import read_trials


@dataclass
class StoredStudy:
    """Everything a process needs to read or work on one study."""

    name: str
    storage: optuna.storages.RDBStorage
    records: StudyRecords
    record: StudyRecord | None  # None: a study search did not create (see the module's notes)
    config: StudyConfig
    workers: WorkerRegistry
    study_id: int
    _study: optuna.Study | None = field(default=None, repr=False)

    @property
    def maximize(self) -> bool:
        return self.config.direction == "max"

    @property
    def foreign(self) -> bool:
        """A study ``search start`` did not create (a plain Optuna study): no record, no space."""
        return self.record is None

    @property
    def budget(self) -> int | None:
        """The study's trial budget (None for a foreign study: it has none of ours)."""
        return None if self.record is None else self.record.budget

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, for reading (a random sampler: loading it builds no TPE)."""
        if self._study is None:
            self._study = retrying(lambda: optuna.load_study(
                study_name=self.name, storage=self.storage,
                sampler=optuna.samplers.RandomSampler()), "load study")
        return self._study

    @property
    def where(self) -> str:
        """The store's URL with any password masked: safe to print."""
        return mask_url(url_of(self.storage))

    def reload(self) -> StudyRecord | None:
        """The study's record as stored now (budget, claims, deadline, configuration)."""
        if self.foreign:
            return None
        self.record = self.records.get(self.name)
        self.config = StudyConfig.from_dict(self.record.config)
        return self.record


def missing_store_hint(exc: MissingStore) -> str:
    return f"{exc} (check --storage or SEARCH_STORAGE; `search start` creates a store)"


def no_such_study(name: str, storage_url: str) -> SearchError:
    return SearchError(f"no study named {name!r} in {mask_url(storage_url)}: "
                       "`search status` lists the studies there")


def not_ours(name: str, storage_url: str) -> SearchError:
    return SearchError(f"study {name!r} in {mask_url(storage_url)} was not created by `search start` "
                       "(a plain Optuna study): `search status`, `search analyze` and `search best` "
                       "read it")


def open_study(storage_url: str | None, name: str,
               store: optuna.storages.RDBStorage | None = None, *,
               read_only: bool = False) -> StoredStudy:
    """The study ``name`` that ``search start`` created in the store; ``store`` reuses an open one.
    One clear error when there is no store file or no such study (and nothing is created).
    ``read_only``: nothing is written to the store (no table made, the journal mode kept), and a
    plain Optuna study is opened too (a foreign study: ``StoredStudy.foreign``)."""
    url = resolve_storage(storage_url)
    if store is None and not read_only:
        # Looked up first without writing: a mistyped name, or a plain Optuna study, leaves the
        # store as it was (opening it to work switches SQLite to WAL and adds our tables).
        found = open_study(url, name, read_only=True)
        found.storage.engine.dispose()
        if found.foreign:
            raise not_ours(name, url)
    try:
        store = store or open_storage(url, must_exist=True, read_only=read_only)
    except MissingStore as exc:
        raise SearchError(f"no study named {name!r}: {missing_store_hint(exc)}") from None
    records = StudyRecords(store.engine, create=not read_only)
    workers = WorkerRegistry(store.engine, create=not read_only)
    record = records.get(name)
    if record is not None:
        return StoredStudy(name, store, records, record, StudyConfig.from_dict(record.config),
                           workers, store.get_study_id_from_name(name))
    try:
        study_id = retrying(lambda: store.get_study_id_from_name(name), "find study")
    except KeyError:
        raise no_such_study(name, url) from None
    if not read_only:
        raise not_ours(name, url)
    stored = StoredStudy(name, store, records, None, StudyConfig("", ""), workers, study_id)
    stored.config = _foreign_config(stored)
    return stored


def _foreign_config(stored: StoredStudy) -> StudyConfig:
    """A plain Optuna study's configuration as far as Optuna knows it: its direction and its
    objective's name (``study.set_metric_names``, else ``value``)."""
    directions = stored.study.directions
    if len(directions) > 1:
        raise SearchError(f"study {stored.name!r} has {len(directions)} objectives: search reads "
                          "single-objective studies (optuna-dashboard shows a Pareto front)")
    maximize = directions[0] == optuna.study.StudyDirection.MAXIMIZE
    objective = (stored.study.metric_names or [FOREIGN_OBJECTIVE])[0]
    # keep_best=0: search kept no checkpoints of its trials
    return StudyConfig("", "", objective=objective, direction="max" if maximize else "min", keep_best=0)


def single_objective_names(store: optuna.storages.RDBStorage) -> list[str]:
    """Every study in the store that search can read, sorted: those it created and the plain
    Optuna studies with one objective."""
    ours = set(StudyRecords(store.engine, create=False).names())
    return sorted(ours | {s.study_name for s in retrying(store.get_all_studies, "list studies")
                          if len(s.directions) == 1})


FOREIGN_OBJECTIVE = "value"  # a plain Optuna study's objective when it names none


def needs_space(stored: StoredStudy, what: str) -> None:
    """One line where ``what`` (a command) needs the space a foreign study does not have."""
    if stored.foreign:
        raise SearchError(f"study {stored.name!r} was not created by `search start` (a plain Optuna "
                          f"study, no space stored): {what} needs its space; `search status`, "
                          "`search analyze` and `search best` read it")


@dataclass
class StudySnapshot:
    study_name: str
    config: StudyConfig
    budget: int | None  # None: a study search did not create (no budget of ours)
    claimed: int
    states: dict[str, int]
    trials: list[FrozenTrial] = field(repr=False)
    best: FrozenTrial | None = None
    workers: list[WorkerRow] = field(default_factory=list)  # every worker the study has had
    deadline: float | None = None  # seconds since the epoch
    stopped: str | None = None  # why the study stopped (no trial starts until a resume)

    @property
    def live_workers(self) -> list[WorkerRow]:
        return [w for w in self.workers if w.live(self.config.grace)]

    @property
    def finished(self) -> int:
        """Finished trials that count against the budget (not those re-run as a copy)."""
        again = trial_attrs.requeued_as(self.trials)
        return sum(1 for t in self.trials if t.state.is_finished() and t.number not in again)

    @property
    def foreign(self) -> bool:
        """A study search did not create: no budget, no workers of ours."""
        return self.budget is None

    @property
    def budget_left(self) -> int:
        return 0 if self.budget is None else max(0, self.budget - self.claimed)

    @property
    def condition_bests(self) -> list[ConditionBest]:
        """The best completed trial of each condition the study swept (``CONDITIONS``)."""
        return best_per_condition(self.trials, self.config.direction)

    @property
    def done(self) -> bool:
        """Every slot of the budget was run and nothing runs: workers that died did not cost the
        study anything (their trials were retried by the others)."""
        return (self.budget is None or self.claimed >= self.budget) \
            and self.states.get("RUNNING", 0) == 0 and self.states.get("WAITING", 0) == 0

    def to_dict(self) -> dict:
        best = None
        if self.best is not None:
            best = {"number": self.best.number, "value": self.best.value,
                    "params": trial_attrs.hp_values(self.best),
                    "metrics": self.best.user_attrs.get(trial_attrs.METRICS, {})}
        again = trial_attrs.requeued_as(self.trials)
        return {
            "study": self.study_name,
            "objective": self.config.objective,
            "direction": self.config.direction,
            "budget": self.budget,
            "foreign": self.foreign,
            "states": self.states,
            "deadline": self.deadline,
            "stopped": self.stopped,
            "best": best,
            "best_per_condition": [
                {"condition": c.condition, "complete": c.complete,
                 "best": None if c.best is None else {"number": c.best.number, "value": c.best.value}}
                for c in self.condition_bests],
            "workers": [dict(w.to_dict(), live=w.live(self.config.grace)) for w in self.workers],
            "trials": [_trial_dict(t, again.get(t.number)) for t in self.trials],
        }


def _trial_dict(trial: FrozenTrial, requeued: int | None = None) -> dict:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial_attrs.hp_values(trial),
        "train_seconds": trial.user_attrs.get(trial_attrs.TRAIN_SECONDS),
        "ms_per_step": trial.user_attrs.get(trial_attrs.MS_PER_STEP),
        "attempt": trial_attrs.attempt(trial),
        "fail_reason": trial_attrs.fail_reason(trial, requeued),
        "fail_detail": trial.user_attrs.get(trial_attrs.FAIL_DETAIL),
    }


def best_trial(trials: list[FrozenTrial], direction: str) -> FrozenTrial | None:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    pick = max if direction == "max" else min
    return pick(complete, key=lambda t: t.value)


@dataclass
class ConditionBest:
    condition: dict        # the values of the space's CONDITIONS the trials ran under
    complete: int          # its completed trials
    best: FrozenTrial | None


def best_per_condition(trials: list[FrozenTrial], direction: str) -> list[ConditionBest]:
    """Per condition the trials ran under (the ``condition`` user attribute), in the order the
    conditions first appear: its completed trials and the best of them. Empty for a study that
    sweeps none."""
    groups: dict[str, list[FrozenTrial]] = {}
    conditions: dict[str, dict] = {}
    for t in sorted(trials, key=lambda t: t.number):
        condition = t.user_attrs.get(trial_attrs.CONDITION)
        if isinstance(condition, dict) and condition:
            key = json.dumps(condition, sort_keys=True, default=str)
            conditions.setdefault(key, condition)
            groups.setdefault(key, []).append(t)
    return [ConditionBest(conditions[key], sum(t.state == TrialState.COMPLETE for t in group),
                          best_trial(group, direction)) for key, group in groups.items()]


def snapshot(stored: StoredStudy) -> StudySnapshot:
    """Read the study's state from the store (one query for the trials, one for the record)."""
    record = stored.reload()
    trials = read_trials(stored.storage, stored.study_id)
    config = stored.config
    return StudySnapshot(
        study_name=stored.name,
        config=config,
        budget=record.budget if record else None,
        claimed=record.claimed if record else len(trials),
        states=dict(Counter(t.state.name for t in trials)),
        trials=trials,
        best=best_trial(trials, config.direction),
        workers=stored.workers.list(stored.name),
        deadline=record.deadline if record else None,
        stopped=record.stopped if record else None,
    )
