"""The Python API behind the CLI: each command is one function returning values a notebook can use.

    import search
    result = search.start("spaces/cnn.py", trials=4, epochs=5)    # a StartResult
    search.status("cnn")                                          # [StudySnapshot]
    analysis = search.analyze("cnn")                              # a StudyAnalysis
    search.ablate("cnn", params=["learning_rate"], repeats=2)     # an AblationQueued
    search.worker("cnn")                                          # a WorkerReport
    search.best("cnn", evaluate=True)                             # a BestTrials

Every function can be called any number of times in one process. ``status`` and ``analyze``
import no Keras; the others load it when they run trials or models.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.errors import SearchError
from search.options import check as check_option
from search.options import resolve_storage, start_options

if TYPE_CHECKING:  # the modules behind these import Optuna, Keras or plotly: loaded when called
    from search.commands.ablate import AblationQueued
    from search.commands.analyze import StudyAnalysis
    from search.commands.best import BestTrials, TopTrial
    from search.commands.start import Prepared
    from search.execution.launchers.slurm import SlurmJob
    from search.execution.pool import WorkerReport
    from search.study import StudySnapshot


def _store_errors(fn):
    """A store that fails past its retries (``search.storage.retry``) is a ``StoreError`` with one
    line, not a driver's traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if "optuna" not in sys.modules:  # no store was opened: not a store's error
                raise
            import optuna
            from sqlalchemy.exc import SQLAlchemyError

            from search.storage import store_failed

            if isinstance(exc, (SQLAlchemyError, optuna.exceptions.StorageInternalError)):
                raise store_failed(exc) from exc
            raise

    return wrapper


@dataclass
class StartResult:
    study_name: str
    resumed: bool
    notes: list[str]
    workers: int
    snapshot: StudySnapshot


@_store_errors
def start(space_file: str, *, fixed: dict | None = None, sweep: dict | None = None,
          on_prepared: Callable[[Prepared], None] | None = None,
          on_progress: Callable[[StudySnapshot], None] | None = None, **options) -> StartResult:
    """Create or resume a study of ``space_file`` and run local workers until its budget is spent.

    ``options`` are ``search start``'s, by their Python names (``search.options.START_OPTIONS``):
    ``study``, ``storage``, ``trials``, ``epochs``, ``workers``, ``data``, ``sampler``, ``seed``,
    ``pruner``, ``timeout``, ``gpus``, ``per_gpu``, ``heartbeat``, ``grace``, ``keep_best``,
    ``artifacts``, ``trial_timeout``, ``ray`` (a Ray cluster's address, or ``auto``: the workers
    are placed there as Ray tasks); ``fixed`` holds ``--set`` values (name -> value), ``sweep``
    ``--sweep`` values (name -> list of values: conditions swept in turn, stored with the study).
    ``on_prepared`` sees the created or resumed study before the workers start, ``on_progress``
    each snapshot while they run.
    """
    from search.execution.devices import plan_slots
    from search.space.source import check_space_file
    from search.versions import check_backend

    checked = start_options(space_file, fixed, sweep, **options)  # every check that needs no Keras first
    check_space_file(space_file)
    check_backend()
    if checked.ray and checked.gpus:
        raise SearchError("--gpus names this machine's GPUs; with --ray, Ray places the workers "
                          "(--workers N, --per-gpu K)")
    if checked.ray:  # a cluster that cannot be reached is answered before Keras loads
        from search.execution.launchers.ray import place

        placement = place(checked.ray, checked.workers, checked.per_gpu)
        workers = placement.workers  # a count: Ray places them, no local slot is listed
    else:
        slots = plan_slots(checked.gpus, checked.per_gpu, checked.workers)
        workers = len(slots)
    from search.commands import start as start_command  # imports Keras and the backend

    prepared = start_command.prepare(checked)
    prepared.workers = workers
    if on_prepared is not None:
        on_prepared(prepared)
    if checked.ray:
        final = start_command.run_on_ray(prepared, placement, on_progress)
    else:
        final = start_command.run(prepared, slots, on_progress)
    return StartResult(prepared.study_name, prepared.resumed, prepared.notes, workers, final)


@_store_errors
def worker(study: str, *, storage: str | None = None, gpus: str | None = None,
           per_gpu: int | None = None, space: str | None = None, data: str | None = None,
           artifacts: str | None = None,
           on_trial: Callable | None = None, on_note: Callable[[str], None] | None = None,
           on_progress: Callable[[StudySnapshot], None] | None = None,
           restart_when_stuck: bool = False) -> WorkerReport:
    """Work on a study from this machine until its budget is spent.

    One slot (no GPU, or one): this process is the worker. Several (``gpus``, ``per_gpu``, or
    several visible GPUs): one pinned worker process per slot, followed as ``start`` does.
    ``space`` (a file): refuse to run unless the space source stored with the study is exactly
    that file's (anyone who can write to the store decides what the workers execute); ``data``
    and ``artifacts``: unless the study reads and keeps its checkpoints there (with ``space``, a
    study that names a data path or an artifact store needs them: ``search.execution.pins``).
    ``restart_when_stuck``: a trial that overruns the study's trial timeout and cannot be stopped
    makes this process start afresh (``exec``): for command-line workers only, never a notebook.
    """
    from search.execution.devices import plan_slots
    from search.execution.pins import Pins
    from search.execution.pool import pool_report, run_local_workers
    from search.execution.trust import first_use_note
    from search.execution.worker import local_space_note, run_worker
    from search.storage import url_of
    from search.study import open_study
    from search.versions import check_backend

    per_gpu = check_option("per_gpu", per_gpu)
    check_backend()
    pins = Pins.of(space, data, artifacts)
    slots = plan_slots(gpus, per_gpu)
    if len(slots) == 1:
        return run_worker(storage, study, gpu=slots[0], on_trial=on_trial, on_note=on_note,
                          pins=pins, restart_when_stuck=restart_when_stuck)
    stored = open_study(storage, study)
    pins.check(stored.record, url_of(stored.storage))
    notes = [] if pins.pinned else [
        local_space_note(stored.record),
        first_use_note(url_of(stored.storage), study, stored.record.space_source)]
    notes = [note for note in notes if note]
    for note in notes:
        if on_note is not None:
            on_note(note)
    final, workers = run_local_workers(stored, slots, on_progress,
                                       space_sha256=pins.space_sha256)
    return pool_report(final, workers, notes)


@_store_errors
def slurm(study: str, *, storage: str | None = None, workers: int = 1, gpus_per_worker: int = 1,
          cpus_per_worker: int = 1, mem: str | None = None, time_limit: str | None = None,
          partition: str | None = None, sbatch_options: tuple[str, ...] = (),
          script: str | None = None, dry_run: bool = False, space: str | None = None,
          data: str | None = None, artifacts: str | None = None) -> SlurmJob:
    """Submit a Slurm job array of ``workers`` workers on ``study``, ``gpus_per_worker`` GPUs each
    (0: CPU workers): its batch script is written to ``script`` (default ``slurm/<study>.sbatch``)
    and submitted with ``sbatch`` unless ``dry_run``. The store URL in the script has no password;
    a password file beside the script (mode 600, ``PGPASSFILE``) holds it. ``space``, ``data``,
    ``artifacts``: every worker is pinned to them as ``search worker --space ...`` is (checked here
    first, so a study that is not what they say is refused before anything is submitted; the
    space file must be readable at the same path where the tasks run, a shared file system)."""
    from search.execution.launchers.slurm import submit
    from search.execution.pins import Pins
    from search.storage import url_of
    from search.study import open_study

    url = resolve_storage(storage)
    stored = open_study(url, study)  # an unknown study or an unreachable store: before sbatch
    pins = Pins.of(space, data, artifacts)
    pins.check(stored.record, url_of(stored.storage))
    return submit(study, url, workers, script=script, dry_run=dry_run,
                  gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, mem=mem,
                  time_limit=time_limit, partition=partition, sbatch_options=sbatch_options,
                  pins=pins.worker_options())


@_store_errors
def status(study: str | None = None, *, storage: str | None = None) -> list[StudySnapshot]:
    """Snapshots of one study (with its workers), or of every study in the store: those search
    created and plain Optuna ones (single-objective). Reads only: nothing is written to the store."""
    from search.storage import MissingStore, open_storage
    from search.study import open_study, single_objective_names, snapshot

    if study is not None:
        return [snapshot(open_study(storage, study, read_only=True))]
    try:
        store = open_storage(resolve_storage(storage), read_only=True)
    except MissingStore:  # no store file: no studies (and no empty file made for it)
        return []
    return [snapshot(open_study(storage, name, store, read_only=True))
            for name in single_objective_names(store)]


@_store_errors
def analyze(study: str, *, storage: str | None = None,
            params: list[str] | None = None) -> StudyAnalysis:
    """What each hyperparameter did: ``.analysis`` (effect tables, verdicts, importances, ablation
    effects), ``.to_dict()``, ``.trials_frame()``, ``.write_html(path)``. Reads the study only;
    imports no Keras."""
    from search.study import open_study

    stored = open_study(storage, study, read_only=True)  # answered before pandas and scipy load
    from search.commands.analyze import analyze as analyze_stored

    return analyze_stored(stored, params=params)


@_store_errors
def ablate(study: str, *, storage: str | None = None, params: list[str] | None = None,
           repeats: int | None = None, interaction: bool = False) -> AblationQueued:
    """Queue one-factor-at-a-time trials around the best configuration (and, with
    ``interaction``, the grid of the first two parameters crossed); the study's workers run
    them. Returns what was queued."""
    from search.study import needs_space, open_study

    # An unknown study, or one without a space, is answered before Keras loads and unwritten.
    needs_space(open_study(storage, study, read_only=True), "`search ablate`")
    from search.commands.ablate import DEFAULT_REPEATS
    from search.commands.ablate import ablate as queue_ablation

    return queue_ablation(study, storage=storage, params=params,
                          repeats=DEFAULT_REPEATS if repeats is None else repeats,
                          interaction=interaction)


@_store_errors
def best(study: str, *, storage: str | None = None, top: int | None = None,
         evaluate: bool = False, export: str | None = None, space: str | None = None,
         data: str | None = None, artifacts: str | None = None,
         on_trial: Callable[[TopTrial], None] | None = None,
         on_note: Callable[[str], None] | None = None) -> BestTrials:
    """The top trials with their kept checkpoints; ``evaluate`` measures them on the held-out
    test split, ``export`` writes their models and configurations to that folder. Both execute
    the stored space source: ``space`` (a file), ``data`` and ``artifacts`` pin it as for
    ``worker``; unpinned, the first run of a stored source here is a note (``on_note``, before
    any model is rebuilt). Without ``evaluate`` and ``export`` nothing is written to the store."""
    from search.study import needs_space, open_study

    stored = open_study(storage, study, read_only=True)  # answered before Keras loads
    if evaluate or export:
        needs_space(stored, "`search best --evaluate`" if evaluate else "`search best --export`")
    from search.commands.best import best as best_trials
    from search.execution.pins import Pins

    return best_trials(study, storage=storage, top=top, evaluate=evaluate, export=export,
                       on_trial=on_trial, pins=Pins.of(space, data, artifacts), on_note=on_note)


def check_html_path(path):
    """An HTML report path checked before any work (not a folder); None stays None."""
    from search.commands.analyze import check_html_path as check

    return check(path)


__all__ = ["SearchError", "StartResult", "ablate", "analyze", "best", "start", "status", "worker"]
