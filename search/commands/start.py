"""``search start``: create or resume a study, then run its local workers (``search.execution.pool``).

Creating a study loads its space and data once to discover the full space (for ``--set`` and the
grid), then stores the configuration and the space's source with the study. Resuming checks that
the space source is unchanged and that no stored setting is contradicted, sets the budget (trials
and the wall-clock deadline), recounts the slots in use, and clears a stop (a Keras Tuner
``FatalError``, too many failed trials in a row) so the study runs again.

Running ends as Keras Tuner's ``search()`` ends: a stopped study raises
:class:`~search.errors.StudyStopped` with the stored reason, and a study that ended with no
completed trial raises a ``SearchError`` with its first failure's reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy.exc

from search import _datasets, trial_attrs
from search.console.format import limit
from search.errors import DownloadError, SearchError, StudyStopped
from search.execution.checkpoints import Checkpoints
from search.execution.launchers.ray import RayPlacement, run_ray_workers
from search.execution.pool import lost_workers, run_local_workers
from search.execution.worker import recount_claims
from search.options import (
    OPTIONS,
    StartOptions,
    StudyConfig,
    check_grace,
    check_study_name,
    option_flag,
    resolve_storage,
    sweep_flag,
)
from search.space.bridge import to_optuna_params
from search.space.conditions import combinations
from search.space.loader import Space, discover, load_space, study_objective, validate_fixed
from search.space.samplers import grid_size
from search.space.source import source_sha256
from search.storage import MissingStore, StudyRecord, StudyRecords, open_storage
from search.study import StoredStudy, StudySnapshot, open_study


@dataclass
class Prepared:
    stored: StoredStudy
    resumed: bool
    notes: list[str]
    space_sha256: str | None = None  # of the space file this start loaded (its workers check it)
    workers: int = 0  # local worker processes about to start

    @property
    def study_name(self) -> str:
        return self.stored.name


def prepare(options: StartOptions, space: Space | None = None, source_kind: str = "space",
            fit_kwargs: dict | None = None) -> Prepared:
    """Create the study, or check and resume it. Touches nothing when it raises.

    ``space``: the space itself instead of loading ``options.space_file`` (``search.Tuner``, whose
    stored source is its script, ``source_kind`` "script", or none, "notebook"); ``fit_kwargs``:
    more arguments for every trial's ``fit()``, stored with a new study."""
    name = options.study or Path(options.space_file).stem
    check_study_name(name)
    space = space or load_space(options.space_file)
    url = resolve_storage(options.storage)
    try:
        store = open_storage(url, must_exist=True)
    except MissingStore:  # created once the new study's space and data have loaded
        store = None
    records = StudyRecords(store.engine) if store is not None else None
    existing = records.get(name) if records is not None else None
    notes: list[str] = []
    if existing is not None:
        _check_resume(name, existing, space.sha256, options)
        stored_config = StudyConfig.from_dict(existing.config)
        config = _changeable_settings(stored_config, options, notes)
        if options.trials is not None and options.trials != existing.budget:
            records.update(name, budget=options.trials)
            notes.append(f"budget changed from {existing.budget} to {options.trials} trials")
        if config != stored_config:
            records.update(name, config=config.to_dict())
        if options.timeout is None and existing.deadline is not None:
            records.update(name, deadline=None)
            notes.append("the previous --timeout no longer applies: no deadline")
        if existing.stopped:
            records.update(name, stopped=None)
            notes.append(f"the study had stopped ({existing.stopped}); it runs again")
        resumed = True
    else:
        if store is not None and name in {s.study_name for s in store.get_all_studies()}:
            raise SearchError(f"the store already has an Optuna study {name!r} that search did not "
                              "create: choose another --study name")
        try:
            config, budget, notes, baseline = _new_config(options, space)
        except DownloadError as exc:
            offline = space.offline_command
            raise DownloadError(f"{exc}. Without internet: {offline}" if offline else str(exc)) from None
        config.source_kind, config.fit_kwargs = source_kind, dict(fit_kwargs or {})
        if store is None:
            store = open_storage(url)
            records = StudyRecords(store.engine)
        try:
            records.add(StudyRecord(
                study_name=name, space_path=options.space_file, space_sha256=space.sha256,
                space_source=space.source, config=config.to_dict(), budget=budget))
        except sqlalchemy.exc.IntegrityError:  # another start created it meanwhile: join that one
            _wait_for_creation(store, name)
            return prepare(options, space, source_kind, fit_kwargs)
        study = optuna.create_study(study_name=name, storage=store,
                                    direction=config.optuna_direction)
        if baseline is not None:
            study.enqueue_trial(baseline, user_attrs={trial_attrs.BASELINE: True})
        resumed = False
    if options.timeout is not None:
        records.update(name, deadline=time.time() + options.timeout)
    stored = open_study(url, name, store)
    records.update(name, claimed=recount_claims(stored))
    stored.reload()
    return Prepared(stored, resumed, notes, space.sha256)


CREATION_WAIT_SECONDS = 60.0


def _wait_for_creation(store, name: str) -> None:
    """Another ``search start`` added the study's record: wait for its Optuna study too."""
    deadline = time.monotonic() + CREATION_WAIT_SECONDS
    while name not in {s.study_name for s in store.get_all_studies()}:
        if time.monotonic() > deadline:
            raise SearchError(f"study {name!r} was being created by another `search start` that "
                              "did not finish: run `search start` again")
        time.sleep(0.2)


def _changeable_settings(config: StudyConfig, options: StartOptions, notes: list[str]) -> StudyConfig:
    """The configuration with the given changeable options (they tune fault detection and
    limits, not the search, so a resume may change them). ``--heartbeat`` alone moves the grace
    period along to at least twice the heartbeat."""
    changed = StudyConfig.from_dict(config.to_dict())
    heartbeat = options.heartbeat or config.heartbeat
    grace = options.grace or (config.grace if options.heartbeat is None
                              else max(OPTIONS["grace"].default, 2 * heartbeat))
    check_grace(heartbeat, grace)
    changed.heartbeat, changed.grace = heartbeat, grace
    for key, value in options.given("changeable").items():
        was = getattr(config, key)
        if key in ("heartbeat", "grace") or value == was:
            continue
        setattr(changed, key, value)
        shown = limit if OPTIONS[key].metavar == "SECONDS" else str
        notes.append(f"{key.replace('_', ' ')} changed from {shown(was)} to {shown(value)}")
    return changed


def _new_config(options: StartOptions, space) -> tuple[StudyConfig, int, list[str], dict | None]:
    """The new study's configuration, budget, notes for the user, and its baseline trial: the
    space's default configuration, run first as Keras Tuner does (none for a grid search)."""
    data_name = options.data or space.default_data
    seed = OPTIONS["seed"].default if options.seed is None else options.seed
    dataset = _datasets.load(data_name, seed)
    found = discover(space, dataset, options.fixed)
    hps = found.hyperparameters
    fixed = validate_fixed(hps, options.fixed)
    sweep = _validated_sweep(hps, options.sweep)
    for condition in combinations(space.conditions):  # CONDITIONS name the space's parameters
        try:
            validate_fixed(hps, {k: v for k, v in condition.items() if k not in fixed and k not in sweep})
        except SearchError as exc:
            raise SearchError(f"{options.space_file}: CONDITIONS {condition}: "
                              f"{str(exc).split(': ', 1)[-1]}") from None
    stored = {o.name: o.default for o in OPTIONS.values() if o.stored}
    stored.update(options.given("fixed"), **options.given("changeable"), data=data_name, seed=seed)
    objective = study_objective(space, options.objective, options.direction, found.fit_returns)
    stored.update(objective=objective.name, direction=objective.direction)
    config = StudyConfig(space_path=options.space_file, fixed=fixed, sweep=sweep, space=hps.get_config(),
                         fit_returns=found.fit_returns, **stored)
    config = _changeable_settings(config, options, [])
    budget = options.trials or OPTIONS["trials"].default
    notes = list(found.notes)
    if config.sampler == "grid":
        size = grid_size(hps, fixed)
        if budget > size:
            notes.append(f"the grid has {size} points: the budget is {size} trials, not {budget}")
            budget = size
    baseline = None if config.sampler == "grid" else to_optuna_params(hps, found.defaults)
    return config, budget, notes, baseline


def _validated_sweep(hps, sweep: dict) -> dict:
    """``--sweep`` values as the space's values (a name it defines, each value in its range or
    choices), in the order given."""
    validated = {}
    for name, values in sweep.items():
        try:
            validated[name] = [validate_fixed(hps, {name: value})[name] for value in values]
        except SearchError as exc:
            raise SearchError(f"{sweep_flag(name, values)}: {str(exc).split(': ', 1)[-1]}") from None
    return validated


def _check_resume(name: str, existing: StudyRecord, sha256: str, options: StartOptions) -> None:
    if existing.space_sha256 != sha256 or source_sha256(existing.space_source) != sha256:
        raise SearchError(
            f"study {name!r} was created from a different source of {existing.space_path} "
            f"(sha256 {existing.space_sha256[:12]}, file now {sha256[:12]}): "
            "restore the file or start a new --study name; nothing was changed")
    stored = StudyConfig.from_dict(existing.config)
    for key, value in options.given("fixed").items():
        if value != getattr(stored, key):
            flag, was = option_flag(key), getattr(stored, key)
            raise SearchError(f"study {name!r} was created with "
                              f"{'the default ' + flag if was is None else f'{flag} {was}'}: "
                              f"resume without {flag} {value} or start a new --study name")
    for key, value in options.fixed.items():
        if str(stored.fixed.get(key, object())) != str(value):
            raise SearchError(f"study {name!r} was created with --set {_fmt_fixed(stored.fixed)}: "
                              f"resume without --set {key}={value} or start a new --study name")
    for key, values in options.sweep.items():
        if [str(v) for v in stored.sweep.get(key, [])] != [str(v) for v in values]:
            shown = " ".join(sweep_flag(k, v) for k, v in stored.sweep.items()) or "no --sweep"
            raise SearchError(f"study {name!r} was created with {shown}: resume without "
                              f"{sweep_flag(key, values)} or start a new --study name")


def _fmt_fixed(fixed: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in fixed.items()) or "(none)"


def run(prepared: Prepared, slots: list[str | None],
        on_progress: Callable[[StudySnapshot], None] | None = None) -> StudySnapshot:
    """Run a worker per slot until the budget is spent; returns the final snapshot. Raises
    StudyStopped when the study stopped, and SearchError when it ended with no completed trial."""
    def launch():
        final, workers = run_local_workers(prepared.stored, slots, on_progress,
                                           space_sha256=prepared.space_sha256)
        return final, lost_workers(workers)
    return _run_to_the_end(prepared, launch)


def run_on_ray(prepared: Prepared, placement: RayPlacement,
               on_progress: Callable[[StudySnapshot], None] | None = None) -> StudySnapshot:
    """:func:`run` with the workers placed as Ray tasks (``search.execution.launchers.ray``)."""
    def launch():
        final, exits = run_ray_workers(prepared.stored, placement, on_progress,
                                       space_sha256=prepared.space_sha256)
        return final, [e.line for e in exits if e.code]
    return _run_to_the_end(prepared, launch)


def _run_to_the_end(prepared: Prepared,
                    launch: Callable[[], tuple[StudySnapshot, list[str]]]) -> StudySnapshot:
    """``launch()`` the workers (it returns the final snapshot and notes on workers that died),
    then end the study as :func:`run` says."""
    try:
        final, notes = launch()
    except SearchError:
        _raise_if_stopped(prepared.stored)
        raise
    prepared.notes.extend(notes)
    stored = prepared.stored
    # what workers that died after an upload left behind (their trials failed, their retries done)
    Checkpoints.of(stored.storage, stored.study_id, stored.config).tidy()
    check_ended(stored, final)
    return final


def check_ended(stored: StoredStudy, final: StudySnapshot) -> None:
    """Keras Tuner's end of a search: StudyStopped for a stopped study, a SearchError with the
    first failure's reason for a finished study with no completed trial."""
    _raise_if_stopped(stored)
    if final.done and not final.states.get("COMPLETE"):
        failed = sorted((t for t in final.trials if trial_attrs.fail_reason(t)), key=lambda t: t.number)
        if failed:
            (reason, count), = Counter(trial_attrs.fail_reason(t) for t in failed).most_common(1)
            raise SearchError(f"no trial of study {stored.name!r} completed ({len(failed)} failed); "
                              f"the most common reason ({count} of {len(failed)}): {reason}")


def _raise_if_stopped(stored: StoredStudy) -> None:
    record = stored.reload()
    if record.stopped:
        raise StudyStopped(stored.name, record.stopped)
