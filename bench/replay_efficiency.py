"""Search efficiency on the recorded learning curves: ``python bench/efficiency.py --replay``.

Every tuner searches the replay space (``bench/spaces/replay.py``): the grids of
``bench/curves.py``, whose trials feed a configuration's recorded epochs (E = 27) through Keras
callbacks, so each tuner's own code decides what to train and for how long:

- Keras Tuner ``Hyperband`` (max_epochs E, factor 3): one iteration sets the unit budget B (the
  epochs it trained, and their recorded seconds); it is then run with as many iterations as the
  largest budget multiple;
- Keras Tuner ``RandomSearch`` and ``BayesianOptimization``: trials of E epochs;
- this service: ``--sampler tpe`` with ``--pruner none``, ``asha`` and ``hyperband``, and
  ``--sampler random --pruner asha``; the space's default configuration runs first (the service's
  rule); trials until the largest budget is spent. ``--loop worker``: through its own start and
  worker loop (``search.commands.start.prepare``, then ``search.execution.worker.run_worker`` on a
  SQLite store, in this process, one worker); ``--loop memory`` (default, ~10x faster): the study
  made by ``prepare``, then the worker's own sampler, pruner and trial (``run_trial``) on an
  in-memory Optuna study; a test checks that both train the same epochs in the same order.

A run is the sequence of epochs it trained, in order, each with its val_accuracy and recorded cost.
Its best at a budget (k x B epochs, or k x B's seconds) is the best val_accuracy among the epochs
trained within it (a trial's score is its best epoch; a diverged trial's epochs cost but score
nothing). Over seeds: the interquartile mean (``scipy.stats.trim_mean(x, 0.25)``) and a bootstrap
95% interval of it (``scipy.stats.bootstrap``, percentile method); and the compute each tuner
needed to reach Keras Tuner Hyperband's, and Keras Tuner RandomSearch's, best at the same budget
and seed, as a fraction of that budget (median over seeds; "-" where most seeds did not reach it).
Benchmark seed s replays recorded seed s mod (recorded seeds) and seeds every tuner with s.

``--partial`` replays a table still being recorded: the part of each grid it holds whole
(``bench/curves.Grid.complete_part``), and every figure is labelled partial.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, curves  # noqa: E402

REPLAY_SPACE = common.BENCH / "spaces" / "replay.py"
TUNERS = ("kt_hyperband", "kt_random", "kt_bayes", "tpe", "tpe_median", "tpe_asha", "tpe_hyperband",
          "random_asha")
OURS = {"tpe": ("tpe", "none"), "tpe_median": ("tpe", "median"), "tpe_asha": ("tpe", "asha"),
        "tpe_hyperband": ("tpe", "hyperband"), "random_asha": ("random", "asha")}
LABELS = {"kt_hyperband": "KT Hyperband", "kt_random": "KT RandomSearch",
          "kt_bayes": "KT BayesianOptimization", "tpe": "search TPE",
          "tpe_median": "search TPE + median (today's default)", "tpe_asha": "search TPE + ASHA",
          "tpe_hyperband": "search TPE + hyperband", "random_asha": "search random + ASHA"}
AXES = ("epochs", "seconds")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="efficiency.py --replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="mlp,cnn", help="recorded spaces (default mlp,cnn)")
    p.add_argument("--seeds", type=int, default=30, help="benchmark seeds 0..N-1 (default 30)")
    p.add_argument("--budgets", default="1,3,10",
                   help="budgets as multiples of one Keras Tuner Hyperband iteration (default 1,3,10)")
    p.add_argument("--factor", type=int, default=3, help="Hyperband's reduction factor (default 3)")
    p.add_argument("--tuners", default=",".join(TUNERS), help=f"subset of {','.join(TUNERS)}")
    p.add_argument("--table", default=str(curves.TABLE), help="the learning-curve table")
    p.add_argument("--partial", action="store_true",
                   help="replay the part of each grid the table holds whole (a table still being recorded)")
    p.add_argument("--loop", choices=("memory", "worker"), default="memory",
                   help="our trials: the worker's sampler, pruner and trial on an in-memory study "
                        "(memory, default: fast), or the worker loop on a SQLite store (worker: exact, "
                        "~1 s a trial here)")
    p.add_argument("--out", default=None,
                   help="JSON path (default bench/results/efficiency_replay.json, _partial with --partial)")
    p.add_argument("--progress", default=None, metavar="JSONL",
                   help="resumable: each finished (space, seed) is appended here, and a rerun with the same "
                        "settings skips the ones it holds")
    args = p.parse_args(argv)
    args.spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    args.tuners = [t.strip() for t in args.tuners.split(",") if t.strip()]
    try:
        args.budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    except ValueError:
        p.error(f"--budgets {args.budgets!r}: whole multiples, e.g. 1,3,10")
    for t in args.tuners:
        if t not in TUNERS:
            p.error(f"unknown tuner {t!r}")
    for s in args.spaces:
        if s not in curves.GRIDS:
            p.error(f"unknown space {s!r} (recorded: {', '.join(curves.GRIDS)})")
    if not args.budgets or args.budgets[0] < 1 or args.seeds < 1:
        p.error("--budgets and --seeds must be at least 1")
    if not Path(args.table).exists():
        p.error(f"no learning-curve table at {args.table} (record it: python bench/learning_curves.py)")
    args.tuners = ["kt_hyperband"] + [t for t in args.tuners if t != "kt_hyperband"]
    return args


def _progress_key(args) -> dict:
    return {"budgets": args.budgets, "tuners": args.tuners, "factor": args.factor, "table": str(args.table),
            "partial": args.partial, "loop": args.loop}


def read_progress(args) -> dict[tuple[str, int], list[dict]]:
    """The (space, seed) runs a ``--progress`` file holds for these settings."""
    done: dict[tuple[str, int], list[dict]] = {}
    if not args.progress or not Path(args.progress).exists():
        return done
    key = _progress_key(args)
    for line in Path(args.progress).read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if entry.get("settings") == key:
            done[entry["space"], entry["seed"]] = entry["runs"]
    if done:
        common.say(f"resuming: {len(done)} (space, seed) replays read from {args.progress}")
    return done


def write_progress(args, space: str, seed: int, runs: list[dict]) -> None:
    if args.progress:
        with open(args.progress, "a") as f:
            f.write(json.dumps({"settings": _progress_key(args), "space": space, "seed": seed,
                                "runs": runs}, default=str) + "\n")


def table_epochs(table: curves.Table) -> int:
    settings = [h["settings"]["epochs"] for h in table.headers]
    if len(set(settings)) != 1:
        raise SystemExit(f"the table mixes runs of {sorted(set(settings))} epochs")
    return settings[0]


# ---------------------------------------------------------------------------------------------
# runs: each returns the epochs it trained, in order, as (val_accuracy or None, cost s)


def run_keras_tuner(kind: str, hypermodel, seed: int, epochs: int, factor: int, iterations: int,
                    trials: int, work: Path) -> list[tuple]:
    import keras_tuner as kt

    from bench import efficiency

    efficiency._patch_keras_tuner_tensorboard()
    kwargs = dict(objective=kt.Objective("val_accuracy", "max"), seed=seed, directory=str(work),
                  project_name=f"{kind}-{seed}", overwrite=True)
    if kind == "kt_hyperband":
        tuner = kt.Hyperband(hypermodel, max_epochs=epochs, factor=factor,
                             hyperband_iterations=iterations, **kwargs)
    else:
        cls = kt.RandomSearch if kind == "kt_random" else kt.BayesianOptimization
        tuner = cls(hypermodel, max_trials=trials, **kwargs)
    hypermodel.trained.clear()
    tuner.search(epochs=epochs, verbose=0)
    return [(value, cost) for _, _, value, cost in hypermodel.trained]


def run_ours(kind: str, seed: int, epochs: int, budget: int, work: Path) -> tuple[list[tuple], dict]:
    """One study through the service's start and worker loop (one worker, slot 0), stopped once it
    has trained ``budget`` epochs: its trial budget is ``budget`` (every trial trains one epoch at
    least) and the worker's stop event is set after the trial that spends it (the worker then
    exits before claiming another)."""
    import threading

    import optuna

    from search.commands.start import prepare
    from search.execution.worker import run_worker
    from search.options import start_options

    sampler, pruner = OURS[kind]
    url = f"sqlite:///{work / f'{kind}-{seed}.db'}"
    study = f"{kind}-{seed}"
    prepared = prepare(start_options(str(REPLAY_SPACE), study=study, storage=url, trials=budget,
                                     epochs=epochs, sampler=sampler, seed=seed, pruner=pruner,
                                     keep_best=0))
    prepared.stored.storage.engine.dispose()
    stop, spent = threading.Event(), [0]

    def on_trial(finished):
        spent[0] += len((finished.user_attrs.get("history") or {}).get("val_accuracy", []))
        if spent[0] >= budget:
            stop.set()

    run_worker(url, study, slot=0, stop=stop, on_trial=on_trial)  # slot 0: the sampler's seed is the study's
    store = optuna.storages.RDBStorage(url)
    done = sorted(optuna.load_study(study_name=study, storage=store).get_trials(deepcopy=False),
                  key=lambda t: t.number)
    store.engine.dispose()
    run, states = [], {}
    for t in done:
        if t.state == optuna.trial.TrialState.WAITING:
            continue
        history = t.user_attrs.get("history") or {}
        scored = t.state != optuna.trial.TrialState.FAIL
        for value, cost in zip(history.get("val_accuracy", []), history.get("replay_seconds", [])):
            run.append((value if scored else None, cost))
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return run, {"trials": sum(states.values()), "states": states}


def run_ours_in_memory(kind: str, seed: int, epochs: int, budget: int, work: Path) -> tuple[list[tuple], dict]:
    """The service's trials without its store: ``prepare`` creates the study as ``search start``
    does (its configuration, the default-first baseline trial), then the worker's own parts run on
    an in-memory Optuna study: its sampler (``make_sampler``, slot 0's seed), its pruner
    (``make_pruner``), its trial (``run_trial``: the trial callback, pruning) and ``record``; no
    budget claims, heartbeats or SQLite round trips (~235 statements a trial). Trials are added
    until ``budget`` epochs are spent. ``--loop worker`` runs the same through the worker loop;
    tests/unit/bench/test_replay_efficiency.py checks that both give the same trials."""
    import optuna

    from search import _datasets, trial_attrs
    from search.commands.start import prepare
    from search.execution.runner import record, run_trial
    from search.execution.worker import space_hyperparameters
    from search.options import start_options
    from search.space.loader import space_from_source
    from search.space.pruners import make_pruner
    from search.space.samplers import make_sampler, worker_seed

    sampler, pruner = OURS[kind]
    url = f"sqlite:///{work / f'{kind}-{seed}.db'}"
    prepared = prepare(start_options(str(REPLAY_SPACE), study=f"{kind}-{seed}", storage=url, trials=1,
                                     epochs=epochs, sampler=sampler, seed=seed, pruner=pruner, keep_best=0))
    stored = prepared.stored
    config = stored.config
    queued = [t for t in stored.storage.get_all_trials(stored.study_id, deepcopy=False)
              if t.state == optuna.trial.TrialState.WAITING]
    space = space_from_source(stored.record.space_source, stored.record.space_path)
    stored.storage.engine.dispose()
    study = optuna.create_study(
        study_name=stored.record.study_name,  # Hyperband's brackets hash the study's name: the worker loop's
        direction=config.optuna_direction,
        sampler=make_sampler(config.sampler, worker_seed(config.seed, 0), space_hyperparameters(config),
                             config.fixed),
        pruner=make_pruner(config.pruner, config.epochs))
    for t in queued:
        study.enqueue_trial(t.system_attrs["fixed_params"], user_attrs=dict(t.user_attrs))
    dataset = _datasets.load(config.data, config.seed)
    run, states = [], {}
    while len(run) < budget:
        trial = study.ask()
        outcome = run_trial(trial, space, dataset, config)
        record(trial, outcome)
        if outcome.state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, outcome.value)
        else:
            study.tell(trial, state=outcome.state)
        history = outcome.attrs.get(trial_attrs.HISTORY) or {}
        scored = outcome.state != optuna.trial.TrialState.FAIL
        for value, cost in zip(history.get("val_accuracy", []), history.get("replay_seconds", [])):
            run.append((value if scored else None, cost))
        states[outcome.state.name] = states.get(outcome.state.name, 0) + 1
    return run, {"trials": sum(states.values()), "states": states}


# ---------------------------------------------------------------------------------------------
# curves


def within(run: list[tuple], budget: float, axis: str) -> list[tuple]:
    """The epochs of ``run`` trained within ``budget`` (epochs, or recorded seconds)."""
    if axis == "epochs":
        return run[: int(budget)]
    out, spent = [], 0.0
    for value, cost in run:
        spent += cost
        if spent > budget + 1e-9:
            break
        out.append((value, cost))
    return out


def best_within(run: list[tuple], budget: float, axis: str) -> float | None:
    values = [v for v, _ in within(run, budget, axis) if v is not None and v == v]
    return max(values, default=None)


def compute_to_reach(run: list[tuple], target: float | None, budget: float, axis: str) -> float | None:
    """Epochs (or seconds) trained until the best reached ``target``, within ``budget``."""
    if target is None:
        return None
    spent = 0.0
    for i, (value, cost) in enumerate(within(run, budget, axis)):
        spent += cost
        if value is not None and value >= target - 1e-9:
            return i + 1 if axis == "epochs" else spent
    return None


def iqm_interval(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """The interquartile mean of ``values`` and a bootstrap 95% interval of it."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(x):
        return None, None, None
    iqm = float(stats.trim_mean(x, 0.25))
    if len(x) < 2 or np.ptp(x) == 0:
        return iqm, iqm, iqm
    ci = stats.bootstrap((x,), lambda a, axis: stats.trim_mean(a, 0.25, axis=axis), n_resamples=2000,
                         confidence_level=0.95, method="percentile", random_state=0).confidence_interval
    return iqm, float(ci.low), float(ci.high)


def summarise(runs: list[dict], tuners: list[str], budgets: list[int]) -> list[dict]:
    rows = []
    for space in dict.fromkeys(r["space"] for r in runs):
        for tuner in tuners:
            mine = [r for r in runs if r["space"] == space and r["tuner"] == tuner]
            if not mine:
                continue
            row = {"space": space, "tuner": tuner, "seeds": len(mine)}
            for axis in AXES:
                for k in budgets:
                    cell = f"{axis}@{k}"
                    iqm, lo, hi = iqm_interval([r["best"][cell] for r in mine])
                    row[cell] = {"iqm": iqm, "low": lo, "high": hi}
                    for target in ("hb", "rs"):
                        fractions = [r[f"to_{target}"][cell] for r in mine]
                        med = statistics.median([math.inf if f is None else f for f in fractions])
                        row[cell][f"to_{target}"] = None if med is None or math.isinf(med) else med
                        row[cell][f"reached_{target}"] = sum(f is not None for f in fractions)
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------


def replay_seed(space: str, seed: int, args, table: curves.Table, epochs: int, work: Path) -> list[dict]:
    from bench.spaces import replay

    recorded = table.seeds(space)
    rec_seed = recorded[seed % len(recorded)]
    os.environ.update({"BENCH_REPLAY_SPACE": space, "BENCH_REPLAY_SEED": str(rec_seed),
                       "BENCH_REPLAY_TABLE": str(Path(args.table).resolve()),
                       "BENCH_REPLAY_PARTIAL": "1" if args.partial else "0"})
    hypermodel = replay.Replay()
    configs = len(hypermodel.grid.configs())
    top = args.budgets[-1]
    unit = run_keras_tuner("kt_hyperband", hypermodel, seed, epochs, args.factor, 1, 0, work)
    unit_budget = {"epochs": len(unit), "seconds": sum(c for _, c in unit)}
    runs = {}
    for tuner in args.tuners:
        started = time.perf_counter()
        info: dict = {}
        if tuner == "kt_hyperband":
            run = run_keras_tuner(tuner, hypermodel, seed, epochs, args.factor, top, 0, work)
        elif tuner.startswith("kt_"):
            trials = math.ceil(top * unit_budget["epochs"] / epochs) + 1
            run = run_keras_tuner(tuner, hypermodel, seed, epochs, args.factor, 1, trials, work)
        else:
            ours = run_ours if args.loop == "worker" else run_ours_in_memory
            run, info = ours(tuner, seed, epochs, top * unit_budget["epochs"], work)
        runs[tuner] = (run, info, time.perf_counter() - started)
        common.say(f"  {space} seed {seed} {LABELS[tuner]}: {len(run)} epochs replayed in "
                   f"{runs[tuner][2]:.1f} s")
    out = []
    for tuner, (run, info, seconds) in runs.items():
        r = {"space": space, "seed": seed, "recorded_seed": rec_seed, "configs": configs, "tuner": tuner,
             "unit_budget": unit_budget, "epochs_trained": len(run),
             "seconds_trained": round(sum(c for _, c in run), 3), "replay_wall_s": round(seconds, 2),
             **info, "best": {}, "to_hb": {}, "to_rs": {}}
        for axis in AXES:
            for k in args.budgets:
                cell, budget = f"{axis}@{k}", k * unit_budget[axis]
                r["best"][cell] = best_within(run, budget, axis)
                for target, ref in (("hb", "kt_hyperband"), ("rs", "kt_random")):
                    goal = best_within(runs[ref][0], budget, axis) if ref in runs else None
                    reach = compute_to_reach(run, goal, budget, axis)
                    r[f"to_{target}"][cell] = None if reach is None else min(1.0, reach / budget)  # within it, up to rounding
        out.append(r)
        common.say(f"{space} seed {seed} {LABELS[tuner]}: {len(run)} epochs ({r['seconds_trained']:.0f} s "
                   f"recorded), best {common.fmt(r['best'][f'epochs@{top}'], 4)} at "
                   f"{top} x B = {top * unit_budget['epochs']} epochs")
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("search").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    table = curves.Table.load(Path(args.table))
    epochs = table_epochs(table)
    import gc

    import keras_tuner  # noqa: F401  (imported before the freeze below)

    import search.commands.start  # noqa: F401
    import search.execution.worker  # noqa: F401

    # Keras Tuner and the service call gc.collect() before every trial (clear_session): with
    # TensorFlow loaded that scans millions of objects, 0.7 s a trial here, 96% of a replay. Frozen,
    # what is loaded so far is no longer scanned; what the tuners compute is the same.
    gc.collect()
    gc.freeze()
    spaces = [s for s in args.spaces if table.seeds(s)]
    if not spaces:
        raise SystemExit(f"{args.table} holds no curves of {', '.join(args.spaces)} yet")
    if not args.partial:
        for s in spaces:
            missing = [seed for seed in table.seeds(s) if not table.complete(s, seed)]
            if missing:
                raise SystemExit(f"{s}: the table lacks configurations of recorded seed(s) {missing} "
                                 "(still being recorded?): --partial replays the part it holds whole")
    info = common.machine()
    label = " (PARTIAL table)" if args.partial else ""
    common.say(f"efficiency --replay{label}: {', '.join(spaces)}, seeds 0..{args.seeds - 1}, E={epochs}, "
               f"budgets {args.budgets} x one KT Hyperband iteration")
    work = Path(tempfile.mkdtemp(prefix="bench-replay-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    done = read_progress(args)
    runs: list[dict] = []
    started = time.perf_counter()
    try:
        for seed in range(args.seeds):  # seed by seed, so that a run cut short holds every space
            for space in spaces:
                if (space, seed) in done:
                    runs.extend(done[space, seed])
                    continue
                seed_dir = work / f"{space}-{seed}"
                seed_dir.mkdir()
                seed_runs = replay_seed(space, seed, args, table, epochs, seed_dir)
                runs.extend(seed_runs)
                write_progress(args, space, seed, seed_runs)
                shutil.rmtree(seed_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(runs, args.tuners, args.budgets)
    info["loadavg_end"] = common.loadavg()
    payload = {"benchmark": "efficiency_replay", "partial": args.partial, "machine": info,
               "table": {"path": str(args.table), "records": len(table),
                         "made_by": [h["machine"].get("git_commit") for h in table.headers]},
               "settings": {**vars(args), "epochs": epochs}, "wall_s": round(time.perf_counter() - started, 1),
               "summary": summary, "runs": runs}
    name = "efficiency_replay_partial" if args.partial else "efficiency_replay"
    path = common.write_results(name, payload, args.out)
    print_results(payload)
    common.say(f"results: {path}")
    return payload


def print_results(payload: dict) -> None:
    settings, label = payload["settings"], " - PARTIAL table" if payload["partial"] else ""
    configs = {(r["space"]): r["configs"] for r in payload["runs"]}
    for axis in AXES:
        rows = []
        for row in payload["summary"]:
            cells = [row["space"], LABELS[row["tuner"]]]
            for k in settings["budgets"]:
                c = row[f"{axis}@{k}"]
                interval = "-" if c["iqm"] is None else f"{c['iqm']:.3f} ({c['low']:.3f}-{c['high']:.3f})"
                cells += [interval, common.fmt(c["to_hb"], 2), common.fmt(c["to_rs"], 2)]
            rows.append(cells)
        columns = ["space", "tuner"]
        for k in settings["budgets"]:
            columns += [f"best @{k}B", "to HB", "to RS"]
        common.print_table(
            f"Search efficiency on the recorded curves{label}, at equal {axis} (E={settings['epochs']}, "
            f"{settings['seeds']} seeds; configurations replayed: "
            + ", ".join(f"{s} {n}" for s, n in configs.items()) + ")",
            columns, rows,
            note=f"best @kB: best val_accuracy within k x B {axis} (B: one KT Hyperband iteration of the "
                 "same seed), IQM over seeds (its bootstrap 95% interval); to HB / to RS: median "
                 f"{axis} to reach KT Hyperband's / KT RandomSearch's best at that budget, as a fraction "
                 "of it ('-': not reached in most seeds)")
