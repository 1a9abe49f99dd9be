"""The Python API behind the CLI: each command is one function returning values a notebook can use."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import storage
from search import coordinator
from search.coordinator import LocalWorker, Prepared, StartOptions
from search.devices import plan_slots
from search.summary import StudySnapshot, snapshot
from search.worker import WorkerReport, local_space_note, open_study_handle, run_worker


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
          seed: int | None = None, pruner: str | None = None, timeout: float | None = None,
          gpus: str | None = None, per_gpu: int | None = None, heartbeat: int | None = None,
          grace: int | None = None,
          on_prepared: Callable[[Prepared], None] | None = None,
          on_progress: Callable[[StudySnapshot], None] | None = None) -> StartResult:
    """Create or resume a study and run local workers until its budget is spent.

    ``gpus`` ("0,1") and ``per_gpu`` place the local workers (default: one per visible GPU,
    else ``workers`` CPU workers, else one); ``timeout`` is the study's wall-clock budget in
    seconds, enforced in the store for every worker.
    """
    slots = plan_slots(gpus, per_gpu, workers)
    options = StartOptions(space_file=space_file, study=study, storage=storage_url, trials=trials,
                           epochs=epochs, workers=workers, data=data, fixed=dict(fixed or {}),
                           sampler=sampler, seed=seed, pruner=pruner, timeout=timeout,
                           heartbeat=heartbeat, grace=grace)
    prepared = coordinator.prepare(options)
    if on_prepared is not None:
        on_prepared(prepared)
    final = coordinator.run(prepared, storage.resolve_url(storage_url), slots, on_progress)
    return StartResult(prepared.study_name, prepared.resumed, prepared.notes, len(slots), final)


def worker(study: str, *, storage_url: str | None = None, gpus: str | None = None,
           per_gpu: int | None = None, slot: int | None = None, on_trial=None,
           on_note: Callable[[str], None] | None = None,
           on_progress: Callable[[StudySnapshot], None] | None = None) -> WorkerReport:
    """Work on a study from this machine until its budget is spent.

    One slot (no GPU, or one): this process is the worker. Several (``gpus``, ``per_gpu``, or
    several visible GPUs): one pinned worker process per slot, followed like ``start`` does.
    ``slot`` (set for the processes ``start`` spawns) runs exactly one worker here.
    """
    if slot is not None:
        return run_worker(storage_url, study, slot=slot, on_trial=on_trial, on_note=on_note)
    slots = plan_slots(gpus, per_gpu)
    if len(slots) == 1:
        return run_worker(storage_url, study, gpu=slots[0], on_trial=on_trial, on_note=on_note)
    handle = open_study_handle(storage_url, study)
    note = local_space_note(handle.record)
    if note and on_note is not None:
        on_note(note)
    final, workers = coordinator.run_local_workers(
        handle, study, storage.resolve_url(storage_url), slots, on_progress)
    return _pool_report(final, workers, note)


def _pool_report(final: StudySnapshot, workers: list[LocalWorker], note: str | None) -> WorkerReport:
    pids = {w.proc.pid for w in workers}
    mine = [t for t in final.trials if (t.user_attrs.get("worker") or {}).get("pid") in pids
            and t.state.is_finished() and not t.user_attrs.get("interrupted")]
    states = Counter(t.state.name for t in mine)
    return WorkerReport(trials=len(mine), complete=states["COMPLETE"], pruned=states["PRUNED"],
                        failed=states["FAIL"], notes=[note] if note else [])


def status(study: str | None = None, *, storage_url: str | None = None) -> list[StudySnapshot]:
    """Snapshots of one study (with its workers), or of every study search created in the store."""
    if study is not None:
        return [snapshot(open_study_handle(storage_url, study))]
    store = storage.open_storage(storage_url)
    names = sorted(storage.StudyRecords(store.engine).names())
    return [snapshot(open_study_handle(storage_url, name, store)) for name in names]
