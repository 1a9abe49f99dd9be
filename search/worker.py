"""A worker: one process that takes trials of a study until its budget is spent.

It needs only the store and the study name: the configuration and the space's source come from
the study's record. Data is loaded once per process and reused by every trial. Each trial first
claims a slot of the study's budget (an atomic update in the store), so the budget is exact
however many workers run, on however many machines.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import keras_tuner as kt
import optuna
from optuna.trial import TrialState

import storage
from search import data as data_module
from search.config import StudyConfig
from search.errors import SearchError
from search.runner import TrialOutcome, record, run_trial
from search.samplers import make_sampler, worker_seed
from search.space import space_from_source

INTERRUPTED_ATTR = "interrupted"


@dataclass
class StudyHandle:
    """Everything a process needs to work on or read a study."""

    storage: optuna.storages.RDBStorage
    records: storage.StudyRecords
    record: storage.StudyRecord
    config: StudyConfig


def open_study_handle(storage_url: str | None, study_name: str,
                      store: optuna.storages.RDBStorage | None = None) -> StudyHandle:
    """The study's store, record and configuration; ``store`` reuses an open store."""
    store = store or storage.open_storage(storage_url)
    records = storage.StudyRecords(store.engine)
    rec = records.get(study_name)
    if rec is None:
        raise SearchError(f"no study named {study_name!r} in {storage.mask_url(storage.resolve_url(storage_url))}: "
                          "`search status` lists the studies there")
    return StudyHandle(store, records, rec, StudyConfig.from_dict(rec.config))


def space_hyperparameters(config: StudyConfig) -> kt.HyperParameters:
    return kt.HyperParameters.from_config(config.space) if config.space else kt.HyperParameters()


@dataclass
class WorkerReport:
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0


def run_worker(storage_url: str | None, study_name: str, slot: int | None = None,
               on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> WorkerReport:
    """Take trials until the study's budget is spent; returns what this worker ran."""
    handle = open_study_handle(storage_url, study_name)
    config = handle.config
    space = space_from_source(handle.record.space_source, handle.record.space_path)
    dataset = data_module.load(config.data, config.seed)
    if slot is None:
        slot = os.getpid()
    sampler = make_sampler(config.sampler, worker_seed(config.seed, slot),
                           space_hyperparameters(config), config.fixed)
    study = optuna.load_study(study_name=study_name, storage=handle.storage, sampler=sampler)
    study_id = handle.storage.get_study_id_from_name(study_name)
    report = WorkerReport()
    while handle.records.claim(study_name):
        trial = study.ask()
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(), "slot": slot})
        try:
            outcome = run_trial(trial, space, dataset, config)
        except KeyboardInterrupt:
            _interrupt(study, trial, handle.records, study_name)
            raise
        _tell(study, trial, outcome)
        report.trials += 1
        report.complete += outcome.state == TrialState.COMPLETE
        report.pruned += outcome.state == TrialState.PRUNED
        report.failed += outcome.state == TrialState.FAIL
        if on_trial is not None:
            trial_id = handle.storage.get_trial_id_from_study_id_trial_number(
                study_id, trial.number)
            on_trial(handle.storage.get_trial(trial_id))
    return report


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    record(trial, outcome)
    if outcome.state == TrialState.COMPLETE:
        study.tell(trial, outcome.value)
    else:
        study.tell(trial, state=outcome.state)


def _interrupt(study, trial, records: storage.StudyRecords, study_name: str) -> None:
    """A trial stopped by Ctrl-C: fail it, mark it interrupted and give its budget slot back."""
    try:
        trial.set_user_attr(INTERRUPTED_ATTR, True)
        trial.set_user_attr("fail_reason", "interrupted by the user")
        study.tell(trial, state=TrialState.FAIL)
    finally:
        records.release(study_name)


def recount_claims(handle: StudyHandle, study_name: str) -> int:
    """Budget slots in use: every trial of the study that was started, except interrupted ones
    (a WAITING trial, such as the baseline, takes its slot when a worker claims it)."""
    trials = handle.storage.get_all_trials(
        handle.storage.get_study_id_from_name(study_name), deepcopy=False)
    return sum(1 for t in trials
               if t.state != TrialState.WAITING and not t.user_attrs.get(INTERRUPTED_ATTR))
