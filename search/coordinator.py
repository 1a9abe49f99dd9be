"""``search start``: create or resume a study, run its local workers, follow their progress.

Creating a study loads its space and data once to discover the full space (for ``--set`` and the
grid), then stores the configuration and the space's source with the study. Resuming checks that
the space source is unchanged and that no stored setting is contradicted, sets the budget, and
recounts the slots in use. Local workers are separate processes (``python -m search worker``):
each pins its own GPU, loads data once, and trains in its own Keras session.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna

import storage
from search import data as data_module
from search.config import DEFAULT_EPOCHS, DEFAULT_SAMPLER, DEFAULT_SEED, DEFAULT_TRIALS, StudyConfig
from search.devices import visible_gpus
from search.errors import SearchError
from search.bridge import to_optuna_params
from search.samplers import SAMPLERS, grid_size
from search.space import discover, load_space, validate_fixed
from search.summary import StudySnapshot, snapshot
from search.worker import StudyHandle, recount_claims

POLL_SECONDS = 1.0
INTERRUPT_GRACE_SECONDS = 30.0


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


@dataclass
class Prepared:
    handle: StudyHandle
    study_name: str
    resumed: bool
    notes: list[str]


def _check_options(options: StartOptions) -> None:
    if options.trials is not None and options.trials < 1:
        raise SearchError(f"--trials must be at least 1 (got {options.trials})")
    if options.epochs is not None and options.epochs < 1:
        raise SearchError(f"--epochs must be at least 1 (got {options.epochs})")
    if options.workers is not None and options.workers < 1:
        raise SearchError(f"--workers must be at least 1 (got {options.workers})")
    if options.sampler is not None and options.sampler not in SAMPLERS:
        raise SearchError(f"unknown sampler {options.sampler!r}: use one of {', '.join(SAMPLERS)}")


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
        if options.trials is not None and options.trials != existing.budget:
            records.update(name, budget=options.trials)
            notes.append(f"budget changed from {existing.budget} to {options.trials} trials")
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
    record = records.get(name)
    handle = StudyHandle(store, records, record, StudyConfig.from_dict(record.config))
    records.update(name, claimed=recount_claims(handle, name))
    return Prepared(handle, name, resumed, notes)


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
        fixed=fixed,
        space=hps.get_config(),
    )
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
    if existing.space_sha256 != sha256:
        raise SearchError(
            f"study {name!r} was created from a different source of {existing.space_path} "
            f"(sha256 {existing.space_sha256[:12]}, file now {sha256[:12]}): "
            "restore the file or start a new --study name; nothing was changed")
    stored = StudyConfig.from_dict(existing.config)
    given = {"epochs": options.epochs, "data": options.data, "sampler": options.sampler,
             "seed": options.seed}
    for key, value in given.items():
        if value is not None and value != getattr(stored, key):
            raise SearchError(f"study {name!r} was created with --{key} {getattr(stored, key)}: "
                              f"resume without --{key} {value} or start a new --study name")
    if options.fixed:
        for key, value in options.fixed.items():
            if str(stored.fixed.get(key, object())) != str(value):
                raise SearchError(f"study {name!r} was created with --set {_fmt_fixed(stored.fixed)}: "
                                  f"resume without --set {key}={value} or start a new --study name")


def _fmt_fixed(fixed: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in fixed.items()) or "(none)"


def _worker_command(study: str, slot: int) -> list[str]:
    return [sys.executable, "-m", "search", "worker", "--study", study, "--slot", str(slot), "--quiet"]


def _spawn_workers(prepared: Prepared, storage_url: str, count: int, log_dir: str) -> list[tuple]:
    gpus = visible_gpus()
    procs = []
    for slot in range(count):
        env = dict(os.environ, SEARCH_STORAGE=storage_url)
        # Grow GPU memory on demand, so several workers can share one GPU (TensorFlow, JAX).
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        log_path = os.path.join(log_dir, f"worker-{slot}.log")
        log = open(log_path, "w")
        proc = subprocess.Popen(_worker_command(prepared.study_name, slot), env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log, log_path))
    return procs


def _last_line(path: str) -> str:
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _stop(procs, grace: float) -> None:
    for proc, _, _ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for proc, _, _ in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(prepared: Prepared, storage_url: str, workers: int,
        on_progress: Callable[[StudySnapshot], None] | None = None) -> StudySnapshot:
    """Run ``workers`` local worker processes until the budget is spent; returns the final snapshot."""
    handle = prepared.handle
    study_id = handle.storage.get_study_id_from_name(prepared.study_name)
    log_dir = tempfile.mkdtemp(prefix=f"search-{prepared.study_name}-workers-")
    procs = _spawn_workers(prepared, storage_url, workers, log_dir)
    try:
        while any(proc.poll() is None for proc, _, _ in procs):
            if on_progress is not None:
                on_progress(snapshot(handle, study_id))
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        try:
            _stop(procs, INTERRUPT_GRACE_SECONDS)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            _stop(procs, 0.0)
        raise
    finally:
        for _, log, _ in procs:
            log.close()
    failures = [(proc.returncode, path) for proc, _, path in procs if proc.returncode]
    final = snapshot(handle, study_id)
    if on_progress is not None:
        on_progress(final)
    if failures:
        code, path = failures[0]
        raise SearchError(f"{len(failures)} of {workers} workers exited with an error (exit {code}): "
                          f"{_last_line(path) or 'no output'} (logs in {log_dir})")
    shutil.rmtree(log_dir, ignore_errors=True)
    return final


def default_workers() -> int:
    return max(1, len(visible_gpus()))

