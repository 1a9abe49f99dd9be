"""Open a study for a process that works on it or reads its state: store, record, configuration.

Imports no Keras, so ``search status`` answers in the time it takes to read the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

import storage
from search.config import StudyConfig
from search.errors import SearchError

_log = logging.getLogger("search.worker")


@dataclass
class StudyHandle:
    """Everything a process needs to work on or read a study."""

    storage: optuna.storages.RDBStorage
    records: storage.StudyRecords
    record: storage.StudyRecord
    config: StudyConfig
    workers: storage.WorkerRegistry | None = None
    notes: list[str] = field(default_factory=list)


class StaleTrialRetry:
    """Optuna's ``RetryHeartbeatStaleTrialCallback`` that also gives the dead trial's budget slot
    back when it queues the retry (the retry takes a slot when a worker claims it)."""

    def __init__(self, max_retry: int):
        self.max_retry = max_retry
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.records: storage.StudyRecords | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retried = len(RetryHeartbeatStaleTrialCallback.retry_history(trial)) < self.max_retry
        self.retry(study, trial)
        if retried and self.records is not None:
            self.records.release(study.study_name)
        _log.warning("trial %d lost its worker (no heartbeat): %s", trial.number,
                     "queued again" if retried else f"not retried ({self.max_retry} retries spent)")


def open_study_handle(storage_url: str | None, study_name: str,
                      store: optuna.storages.RDBStorage | None = None,
                      heartbeat: bool = False) -> StudyHandle:
    """The study's store, record and configuration; ``store`` reuses an open store.

    ``heartbeat=True`` opens the store with the study's heartbeat settings and retry callback,
    as a process that runs or reaps trials needs it.
    """
    opened = store is None
    where = storage.mask_url(storage.resolve_url(storage_url))
    try:
        store = store or storage.open_storage(storage_url, must_exist=True)
    except storage.MissingStore as exc:
        raise SearchError(f"no study named {study_name!r}: {exc}") from None
    records = storage.StudyRecords(store.engine)
    rec = records.get(study_name)
    if rec is None:
        raise SearchError(f"no study named {study_name!r} in {where}: "
                          "`search status` lists the studies there")
    config = StudyConfig.from_dict(rec.config)
    if heartbeat:
        if opened:
            store.engine.dispose()
        on_stale = StaleTrialRetry(config.max_retry)
        store = storage.open_storage(storage_url, heartbeat_interval=config.heartbeat_s,
                                     grace_period=config.grace_s, on_stale_trial=on_stale)
        records = storage.StudyRecords(store.engine)
        on_stale.records = records
    return StudyHandle(store, records, rec, config, storage.WorkerRegistry(store.engine))
