"""The Python API behind the CLI: each command is one function returning values a notebook can use."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import storage
from search.errors import SearchError
from search.handle import open_study_handle
from search.summary import StudySnapshot, snapshot

if TYPE_CHECKING:  # the modules that run trials import Keras: only the commands that run them load them
    from search.coordinator import LocalWorker, Prepared
    from search.worker import WorkerReport


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
          grace: int | None = None, keep_best: int | None = None, artifacts: str | None = None,
          trial_timeout: float | None = None,
          on_prepared: Callable[[Prepared], None] | None = None,
          on_progress: Callable[[StudySnapshot], None] | None = None) -> StartResult:
    """Create or resume a study and run local workers until its budget is spent.

    ``gpus`` ("0,1") and ``per_gpu`` place the local workers (default: one per visible GPU,
    else ``workers`` CPU workers, else one); ``timeout`` is the study's wall-clock budget in
    seconds, enforced in the store for every worker.
    """
    from search import coordinator
    from search.devices import plan_slots

    slots = plan_slots(gpus, per_gpu, workers)
    options = coordinator.StartOptions(
        space_file=space_file, study=study, storage=storage_url, trials=trials, epochs=epochs,
        workers=workers, data=data, fixed=dict(fixed or {}), sampler=sampler, seed=seed,
        pruner=pruner, timeout=timeout, heartbeat=heartbeat, grace=grace, keep_best=keep_best,
        artifacts=artifacts, trial_timeout=trial_timeout)
    prepared = coordinator.prepare(options)
    if on_prepared is not None:
        on_prepared(prepared)
    final = coordinator.run(prepared, storage.resolve_url(storage_url), slots, on_progress)
    return StartResult(prepared.study_name, prepared.resumed, prepared.notes, len(slots), final)


def worker(study: str, *, storage_url: str | None = None, gpus: str | None = None,
           per_gpu: int | None = None, slot: int | None = None, on_trial=None,
           on_note: Callable[[str], None] | None = None,
           on_progress: Callable[[StudySnapshot], None] | None = None,
           space: str | None = None, space_sha256: str | None = None,
           restart_when_stuck: bool = False) -> WorkerReport:
    """Work on a study from this machine until its budget is spent.

    One slot (no GPU, or one): this process is the worker. Several (``gpus``, ``per_gpu``, or
    several visible GPUs): one pinned worker process per slot, followed like ``start`` does.
    ``slot`` (set for the processes ``start`` spawns) runs exactly one worker here.

    ``space`` (a file) or ``space_sha256``: refuse to run unless the space source stored with the
    study is exactly that (anyone who can write to the store decides what the workers execute).
    ``restart_when_stuck``: a trial that overruns the study's trial timeout and cannot be
    stopped makes this process start afresh (``exec``), for command-line workers only.
    """
    from search import coordinator
    from search.devices import plan_slots
    from search.space import read_source, source_sha256
    from search.worker import check_space_source, local_space_note, run_worker

    if space is not None:
        expected = source_sha256(read_source(space))
        if space_sha256 is not None and space_sha256 != expected:
            raise SearchError(f"--space {space} does not match the hash given with it")
        space_sha256 = expected
    kwargs = {"on_trial": on_trial, "on_note": on_note, "expected_sha256": space_sha256,
              "expected_from": space, "restart_when_stuck": restart_when_stuck}
    if slot is not None:
        return run_worker(storage_url, study, slot=slot, **kwargs)
    slots = plan_slots(gpus, per_gpu)
    if len(slots) == 1:
        return run_worker(storage_url, study, gpu=slots[0], **kwargs)
    handle = open_study_handle(storage_url, study)
    check_space_source(handle.record, space_sha256, space)
    note = local_space_note(handle.record) if space_sha256 is None else None
    if note and on_note is not None:
        on_note(note)
    final, workers = coordinator.run_local_workers(
        handle, study, storage.resolve_url(storage_url), slots, on_progress,
        space_sha256=space_sha256)
    return _pool_report(final, workers, note)


def _pool_report(final: StudySnapshot, workers: list[LocalWorker], note: str | None) -> WorkerReport:
    from search.worker import WorkerReport

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
    try:
        store = storage.open_storage(storage_url, must_exist=True)
    except storage.MissingStore:  # no store file: no studies (and no empty file made for it)
        return []
    names = sorted(storage.StudyRecords(store.engine).names())
    return [snapshot(open_study_handle(storage_url, name, store)) for name in names]


def analyze(study: str, *, storage_url: str | None = None, params: list[str] | None = None):
    """What each hyperparameter did (``search.reports.StudyAnalysis``): ``.analysis`` (effect
    tables, verdicts, importances, ablation effects), ``.to_dict()``, ``.trials_frame()``,
    ``.write_html(path)``. Reads the study only; imports no Keras."""
    from search.reports import analyze as analyze_stored

    return analyze_stored(study, storage_url=storage_url, params=params)


def ablate(study: str, *, storage_url: str | None = None, params: list[str] | None = None,
           repeats: int | None = None):
    """Queue one-factor-at-a-time trials around the best configuration (``search.ablate``); the
    study's workers run them. Returns what was queued (``AblationQueued``)."""
    from search.ablate import DEFAULT_REPEATS
    from search.ablate import ablate as queue_ablation

    return queue_ablation(study, storage_url=storage_url, params=params,
                          repeats=DEFAULT_REPEATS if repeats is None else repeats)


def best(study: str, *, storage_url: str | None = None, top: int | None = None,
         evaluate: bool = False, export: str | None = None, on_trial=None):
    """The top trials with their kept checkpoints (``search.best.BestTrials``); ``evaluate``
    measures them on the held-out test split, ``export`` writes their models and configurations."""
    from search.best import best as best_trials

    return best_trials(study, storage_url=storage_url, top=top, evaluate=evaluate, export=export,
                       on_trial=on_trial)
