"""Open a stored study for reading: its record, configuration and Optuna study, without Keras.

``search analyze`` reads a study and nothing else: importing Keras and its backend (what the
worker's modules do) would cost it 5 to 10 seconds before the first row is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

import storage
from search.config import StudyConfig
from search.errors import SearchError


@dataclass
class StoredStudy:
    name: str
    storage_url: str  # resolved (never printed: it may hold a password)
    storage: optuna.storages.RDBStorage
    records: storage.StudyRecords
    record: storage.StudyRecord
    config: StudyConfig
    study: optuna.Study
    study_id: int

    @property
    def maximize(self) -> bool:
        return self.config.direction == "max"


def open_stored(study_name: str, storage_url: str | None = None) -> StoredStudy:
    """The study ``study_name`` that ``search start`` created in the store; one clear error when
    there is none."""
    url = storage.resolve_url(storage_url)
    store = storage.open_storage(url, must_exist=True)
    records = storage.StudyRecords(store.engine)
    record = records.get(study_name)
    if record is None:
        raise SearchError(f"no study named {study_name!r} in {storage.mask_url(url)}: "
                          "`search status` lists the studies there")
    study = storage.retrying(lambda: optuna.load_study(
        study_name=study_name, storage=store, sampler=optuna.samplers.RandomSampler()), "load study")
    return StoredStudy(study_name, url, store, records, record, StudyConfig.from_dict(record.config),
                       study, store.get_study_id_from_name(study_name))
