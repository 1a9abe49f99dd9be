"""The Python API behind the CLI: each command is one function returning values a notebook can use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import storage
from search import coordinator
from search.coordinator import Prepared, StartOptions
from search.summary import StudySnapshot, snapshot
from search.worker import WorkerReport, open_study_handle, run_worker


@dataclass
class StartResult:
    study_name: str
    resumed: bool
    notes: list[str]
    workers: int
    snapshot: StudySnapshot


def start(space_file: str, *, study: str | None = None, storage_url: str | None = None,
          trials: int | None = None, epochs: int | None = None, workers: int | None = None,
          data: str | None = None, fixed: dict | None = None, sampler: str | None = None,
          seed: int | None = None,
          on_prepared: Callable[[Prepared], None] | None = None,
          on_progress: Callable[[StudySnapshot], None] | None = None) -> StartResult:
    """Create or resume a study and run local workers until its budget is spent."""
    options = StartOptions(space_file=space_file, study=study, storage=storage_url, trials=trials,
                           epochs=epochs, workers=workers, data=data, fixed=dict(fixed or {}),
                           sampler=sampler, seed=seed)
    prepared = coordinator.prepare(options)
    if on_prepared is not None:
        on_prepared(prepared)
    count = workers or coordinator.default_workers()
    final = coordinator.run(prepared, storage.resolve_url(storage_url), count, on_progress)
    return StartResult(prepared.study_name, prepared.resumed, prepared.notes, count, final)


def worker(study: str, *, storage_url: str | None = None, slot: int | None = None,
           on_trial=None) -> WorkerReport:
    """Work on a study from this process until its budget is spent."""
    return run_worker(storage_url, study, slot=slot, on_trial=on_trial)


def status(study: str | None = None, *, storage_url: str | None = None) -> list[StudySnapshot]:
    """Snapshots of one study, or of every study search created in the store."""
    if study is not None:
        return [snapshot(open_study_handle(storage_url, study))]
    store = storage.open_storage(storage_url)
    names = sorted(storage.StudyRecords(store.engine).names())
    return [snapshot(open_study_handle(storage_url, name, store)) for name in names]
