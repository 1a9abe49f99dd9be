"""``search start``: create or resume a study, run its local workers, follow their progress.

Creating a study loads its space and data once to discover the full space (for ``--set`` and the
grid), then stores the configuration and the space's source with the study. Resuming checks that
the space source is unchanged and that no stored setting is contradicted, sets the budget (trials
and the wall-clock deadline), and recounts the slots in use. Local workers are separate processes
(``python -m search worker``): each pins its own GPU (or a CPU slot), loads data once, and trains
in its own Keras session. ``search worker`` with several slots runs the same pool.

While its workers run, the coordinator reaps stale trials (``optuna.storages.fail_stale_trials``)
so that a dead worker's trial is retried even when no other worker asks for a trial. Ctrl-C
stops the local workers after their current epoch; their trials are queued again (see
``search.worker``). A second Ctrl-C stops them at once, the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna

import storage
from search import data as data_module
from search.artifacts import normalize_location
from search.bridge import to_optuna_params
from search.config import (
    DEFAULT_EPOCHS,
    DEFAULT_GRACE_S,
    DEFAULT_KEEP_BEST,
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    DEFAULT_TRIALS,
    StudyConfig,
)
from search.devices import worker_env
from search.errors import SearchError
from search.pruners import PRUNERS
from search.samplers import SAMPLERS, grid_size
from search.space import discover, load_space, source_sha256, validate_fixed
from search.summary import StudySnapshot, snapshot
from search.worker import (
    StudyHandle,
    fail_stale_trials,
    open_study_handle,
    recount_claims,
)

POLL_SECONDS = 1.0
PROGRESS_READ_SHARE = 20  # wait 20x a progress read's time before the next one (<= 5% of a core)
# After Ctrl-C: how long the workers get to finish their current epoch, then to queue their
# trial again after SIGTERM, before they are killed (a killed worker's trial is retried after the
# heartbeat grace period instead).
INTERRUPT_GRACE_SECONDS = 30.0
TERMINATE_GRACE_SECONDS = 10.0


@dataclass
class StartOptions:
    """What ``search start`` was asked; None means 'not given' (stored or default value applies)."""

    space_file: str
    study: str | None = None
    storage: str | None = None
    trials: int | None = None
    epochs: int | None = None
    workers: int | None = None
    data: str | None = None
    fixed: dict = field(default_factory=dict)  # raw --set values
    sampler: str | None = None
    seed: int | None = None
    pruner: str | None = None
    timeout: float | None = None  # seconds of wall clock from this start; None: no deadline
    heartbeat: int | None = None
    grace: int | None = None
    keep_best: int | None = None  # checkpoints kept (search.artifacts)
    artifacts: str | None = None  # their artifact store
    trial_timeout: float | None = None  # seconds one trial may run; stored with the study


@dataclass
class Prepared:
    handle: StudyHandle
    study_name: str
    resumed: bool
    notes: list[str]
    space_sha256: str | None = None  # of the space file this start loaded (its workers check it)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``): stop the local workers at once, as a second Ctrl-C."""


def _check_options(options: StartOptions) -> None:
    if options.trials is not None and options.trials < 1:
        raise SearchError(f"--trials must be at least 1 (got {options.trials})")
    if options.epochs is not None and options.epochs < 1:
        raise SearchError(f"--epochs must be at least 1 (got {options.epochs})")
    if options.workers is not None and options.workers < 1:
        raise SearchError(f"--workers must be at least 1 (got {options.workers})")
    if options.sampler is not None and options.sampler not in SAMPLERS:
        raise SearchError(f"unknown sampler {options.sampler!r}: use one of {', '.join(SAMPLERS)}")
    if options.pruner is not None and options.pruner not in PRUNERS:
        raise SearchError(f"unknown pruner {options.pruner!r}: use one of {', '.join(PRUNERS)}")
    if options.timeout is not None and options.timeout <= 0:
        raise SearchError(f"--timeout must be a positive number of seconds (got {options.timeout:g})")
    if options.heartbeat is not None and options.heartbeat < 1:
        raise SearchError(f"--heartbeat must be at least 1 second (got {options.heartbeat})")
    if options.grace is not None and options.grace < 1:
        raise SearchError(f"--grace must be at least 1 second (got {options.grace})")
    if options.keep_best is not None and options.keep_best < 0:
        raise SearchError(f"--keep-best must be 0 or more (got {options.keep_best})")
    options.artifacts = normalize_location(options.artifacts)
    if options.grace is not None and options.heartbeat is not None and options.grace <= options.heartbeat:
        raise SearchError(f"--grace must be longer than the heartbeat interval ({options.heartbeat} s), "
                          f"got {options.grace}")
    if options.trial_timeout is not None and not options.trial_timeout > 0:
        raise SearchError(f"--trial-timeout must be a positive number of seconds "
                          f"(got {options.trial_timeout:g})")


def prepare(options: StartOptions) -> Prepared:
    """Create the study, or check and resume it. Touches nothing when it raises."""
    _check_options(options)
    space = load_space(options.space_file)
    name = options.study or Path(options.space_file).stem
    store = storage.open_storage(options.storage)
    records = storage.StudyRecords(store.engine)
    existing = records.get(name)
    notes: list[str] = []
    if existing is not None:
        _check_resume(name, existing, space.sha256, options)
        changed = _heartbeat_settings(StudyConfig.from_dict(existing.config), options)
        stored_timeout = StudyConfig.from_dict(existing.config).trial_timeout_s
        if options.trial_timeout is not None and options.trial_timeout != stored_timeout:
            changed = changed or StudyConfig.from_dict(existing.config)
            changed.trial_timeout_s = options.trial_timeout
            notes.append(f"trial timeout changed from {_fmt_seconds(stored_timeout)} to "
                         f"{options.trial_timeout:g} s")
        if options.trials is not None and options.trials != existing.budget:
            records.update(name, budget=options.trials)
            notes.append(f"budget changed from {existing.budget} to {options.trials} trials")
        if changed is not None:
            records.update(name, config=changed.to_dict())
        if options.timeout is None and existing.deadline is not None:
            records.update(name, deadline=None)
            notes.append("the previous --timeout no longer applies: no deadline")
        resumed = True
    else:
        if name in {s.study_name for s in store.get_all_studies()}:
            raise SearchError(f"the store already has an Optuna study {name!r} that search did not "
                              "create: choose another --study name")
        config, budget, notes, baseline = _new_config(options, space, name)
        records.add(storage.StudyRecord(
            study_name=name, space_path=options.space_file, space_sha256=space.sha256,
            space_source=space.source, config=config.to_dict(), budget=budget))
        study = optuna.create_study(study_name=name, storage=store,
                                    direction="maximize" if config.direction == "max" else "minimize")
        if baseline is not None:
            study.enqueue_trial(baseline, user_attrs={"baseline": True})
        resumed = False
    if options.timeout is not None:
        records.update(name, deadline=time.time() + options.timeout)
    record = records.get(name)
    handle = StudyHandle(store, records, record, StudyConfig.from_dict(record.config),
                         storage.WorkerRegistry(store.engine))
    records.update(name, claimed=recount_claims(handle, name))
    return Prepared(handle, name, resumed, notes, space.sha256)


def _fmt_seconds(seconds: float | None) -> str:
    return "no limit" if seconds is None else f"{seconds:g} s"


def _heartbeat_settings(config: StudyConfig, options: StartOptions) -> StudyConfig | None:
    """The stored configuration with the given --heartbeat/--grace, or None when unchanged
    (they tune fault detection, not the search, so a resume may change them)."""
    heartbeat = options.heartbeat or config.heartbeat_s
    grace = options.grace or (config.grace_s if options.heartbeat is None
                              else max(DEFAULT_GRACE_S, 2 * heartbeat))
    if (heartbeat, grace) == (config.heartbeat_s, config.grace_s):
        return None
    if grace <= heartbeat:
        raise SearchError(f"--grace must be longer than the heartbeat interval ({heartbeat} s), "
                          f"got {grace}")
    config.heartbeat_s, config.grace_s = heartbeat, grace
    return config


def _new_config(options: StartOptions, space, name: str) -> tuple[StudyConfig, int, list[str], dict | None]:
    """The new study's configuration, budget, notes for the user, and its baseline trial: the
    space's default configuration, run first as Keras Tuner does (none for a grid search)."""
    data_name = options.data or space.default_data
    seed = DEFAULT_SEED if options.seed is None else options.seed
    dataset = data_module.load(data_name, seed)
    found = discover(space, dataset, options.fixed)
    hps = found.hyperparameters
    fixed = validate_fixed(hps, options.fixed)
    config = StudyConfig(
        space_path=options.space_file,
        data=data_name,
        epochs=options.epochs or DEFAULT_EPOCHS,
        objective=space.objective.name,
        direction=space.objective.direction,
        sampler=options.sampler or DEFAULT_SAMPLER,
        seed=seed,
        pruner=options.pruner or DEFAULT_PRUNER,
        fixed=fixed,
        space=hps.get_config(),
        trial_timeout_s=options.trial_timeout,
        keep_best=DEFAULT_KEEP_BEST if options.keep_best is None else options.keep_best,
        artifacts=options.artifacts,
    )
    changed = _heartbeat_settings(config, options)
    config = changed or config
    budget = options.trials or DEFAULT_TRIALS
    notes = []
    if config.sampler == "grid":
        size = grid_size(hps, fixed)
        if budget > size:
            notes.append(f"the grid has {size} points: the budget is {size} trials, not {budget}")
            budget = size
    baseline = None if config.sampler == "grid" else to_optuna_params(hps, found.defaults)
    return config, budget, notes, baseline


def _check_resume(name: str, existing: storage.StudyRecord, sha256: str, options: StartOptions) -> None:
    if existing.space_sha256 != sha256 or source_sha256(existing.space_source) != sha256:
        raise SearchError(
            f"study {name!r} was created from a different source of {existing.space_path} "
            f"(sha256 {existing.space_sha256[:12]}, file now {sha256[:12]}): "
            "restore the file or start a new --study name; nothing was changed")
    stored = StudyConfig.from_dict(existing.config)
    given = {"epochs": options.epochs, "data": options.data, "sampler": options.sampler,
             "seed": options.seed, "pruner": options.pruner, "keep_best": options.keep_best,
             "artifacts": options.artifacts}
    for key, value in given.items():
        if value is not None and value != getattr(stored, key):
            flag, was = f"--{key.replace('_', '-')}", getattr(stored, key)
            raise SearchError(f"study {name!r} was created with "
                              f"{'the default ' + flag if was is None else f'{flag} {was}'}: "
                              f"resume without {flag} {value} or start a new --study name")
    if options.fixed:
        for key, value in options.fixed.items():
            if str(stored.fixed.get(key, object())) != str(value):
                raise SearchError(f"study {name!r} was created with --set {_fmt_fixed(stored.fixed)}: "
                                  f"resume without --set {key}={value} or start a new --study name")


def _fmt_fixed(fixed: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in fixed.items()) or "(none)"


def _worker_command(study: str, slot: int, space_sha256: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "search", "worker", "--study", study, "--slot", str(slot), "--quiet"]
    if space_sha256:  # the worker refuses to run a stored source that differs from this one
        command += ["--space-sha256", space_sha256]
    return command


@dataclass
class LocalWorker:
    slot: int
    gpu: str | None
    proc: subprocess.Popen
    log_path: str


def _spawn_workers(study_name: str, storage_url: str, slots: list[str | None],
                   log_dir: str, space_sha256: str | None = None) -> list[LocalWorker]:
    """One process per slot, pinned to its GPU, in a session of its own: a Ctrl-C in the terminal
    reaches the coordinator only, which then stops its workers in order."""
    workers = []
    for slot, gpu in enumerate(slots):
        env = worker_env(gpu)
        env["SEARCH_STORAGE"] = storage_url
        log_path = os.path.join(log_dir, f"worker-{slot}.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(_worker_command(study_name, slot, space_sha256), env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        workers.append(LocalWorker(slot, gpu, proc, log_path))
    return workers


def _last_line(path: str) -> str:
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _signal_all(workers: list[LocalWorker], sig: int) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(sig)


def _wait_all(workers: list[LocalWorker], seconds: float) -> bool:
    """Wait up to ``seconds`` for every worker to exit; True when they all did."""
    deadline = time.monotonic() + seconds
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    return True


def stop_workers(workers: list[LocalWorker], grace: float = INTERRUPT_GRACE_SECONDS,
                 now: bool = False) -> None:
    """Stop the local workers: SIGINT (finish the current epoch, queue the trial again), then
    SIGTERM (queue it again at once), then SIGKILL (its heartbeat goes stale, it is retried)."""
    if not now:
        _signal_all(workers, signal.SIGINT)
        if _wait_all(workers, grace):
            return
    _signal_all(workers, signal.SIGTERM)
    if _wait_all(workers, TERMINATE_GRACE_SECONDS):
        return
    _signal_all(workers, signal.SIGKILL)
    _wait_all(workers, TERMINATE_GRACE_SECONDS)


def run_local_workers(handle: StudyHandle, study_name: str, storage_url: str,
                      slots: list[str | None],
                      on_progress: Callable[[StudySnapshot], None] | None = None,
                      on_started: Callable[[list[LocalWorker]], None] | None = None,
                      space_sha256: str | None = None,
                      ) -> tuple[StudySnapshot, list[LocalWorker]]:
    """Run one worker process per slot until they exit (the budget is spent); reap stale trials
    meanwhile. Returns the final snapshot and the workers.

    ``space_sha256``: the workers refuse to run the study's stored source unless it has this hash.
    Ctrl-C stops the workers after their current epoch, a second Ctrl-C or a SIGTERM at once;
    either way their trials are queued again and :class:`KeyboardInterrupt` (or
    :class:`Terminated`) is raised once they are gone."""
    study_id = handle.storage.get_study_id_from_name(study_name)
    reaper_handle = open_study_handle(storage_url, study_name, heartbeat=True)
    reaper = storage.retrying(lambda: optuna.load_study(
        study_name=study_name, storage=reaper_handle.storage,
        sampler=optuna.samplers.RandomSampler()), "load study")
    log_dir = tempfile.mkdtemp(prefix=f"search-{study_name}-workers-")
    with _terminate_as_interrupt():
        workers = _spawn_workers(study_name, storage_url, slots, log_dir, space_sha256)
        if on_started is not None:
            on_started(workers)
        next_reap = next_progress = 0.0
        try:
            while any(w.proc.poll() is None for w in workers):
                if time.monotonic() >= next_reap:
                    fail_stale_trials(reaper)
                    next_reap = time.monotonic() + handle.config.heartbeat_s
                if on_progress is not None and time.monotonic() >= next_progress:
                    read_from = time.monotonic()
                    on_progress(snapshot(handle, study_id))
                    # A large study takes a while to read: keep the progress line to a small share
                    # of a core, the workers on this machine need it.
                    next_progress = time.monotonic() + PROGRESS_READ_SHARE * (time.monotonic() - read_from)
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt as first:
            try:
                stop_workers(workers, now=isinstance(first, Terminated))
            except KeyboardInterrupt as second:  # a second Ctrl-C or a SIGTERM: stop now
                try:
                    stop_workers(workers, now=True)
                except KeyboardInterrupt:  # and a third: SIGKILL (their trials are reaped later)
                    _signal_all(workers, signal.SIGKILL)
                raise second from None
            raise
    final = snapshot(handle, study_id)
    if on_progress is not None:
        on_progress(final)
    failures = [w for w in workers if w.proc.returncode]
    if failures and not study_done(final):
        first = failures[0]
        raise SearchError(f"{len(failures)} of {len(workers)} workers exited with an error "
                          f"({_exit_text(first.proc.returncode)}): "
                          f"{_last_line(first.log_path) or 'no output'} (logs in {log_dir})")
    if not failures:
        shutil.rmtree(log_dir, ignore_errors=True)
    return final, workers


@contextmanager
def _terminate_as_interrupt():
    """While the local workers run, SIGTERM raises :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit {code}"


def study_done(snap: StudySnapshot) -> bool:
    """Every slot of the budget was run and nothing runs: the workers that died did not cost the
    study anything (their trials were retried by the others)."""
    return snap.claimed >= snap.budget and snap.states.get("RUNNING", 0) == 0 \
        and snap.states.get("WAITING", 0) == 0


def lost_workers(workers: list[LocalWorker]) -> list[str]:
    """One line per local worker that did not exit cleanly."""
    return [f"worker {w.slot} (pid {w.proc.pid}) {_exit_text(w.proc.returncode)}; "
            f"log {w.log_path}" for w in workers if w.proc.returncode]


def run(prepared: Prepared, storage_url: str, slots: list[str | None],
        on_progress: Callable[[StudySnapshot], None] | None = None) -> StudySnapshot:
    """Run a worker per slot until the budget is spent; returns the final snapshot."""
    final, workers = run_local_workers(prepared.handle, prepared.study_name, storage_url, slots,
                                       on_progress, space_sha256=prepared.space_sha256)
    prepared.notes.extend(lost_workers(workers))
    return final
