"""Parallel workers on the recorded learning curves: duplicate configurations, and the best found
within a compute, with 1, 4 and 8 workers sharing one study (issue 16: the parallel variants and
the "at most 1% duplicates under 8 workers" target).

Each worker is a thread with its own Optuna study object over one shared in-memory storage, as a
worker process has its own sampler over the shared store: the study as
``search.commands.start.prepare`` makes it (the default-first trial queued), the worker's sampler
(``make_sampler`` with slot i's seed) and pruner, and the trial the worker runs
(``bench.default_vs_random.replay_trial``: ``TrialHyperParameters``, the replay space's build/fit
driving ``TrialCallback``, the worker's tell). Each replayed epoch sleeps its recorded CPU seconds
times ``--time-scale``, so trials overlap and finish out of order as they do on N machines: a worker
asks while the others' trials are still running. A worker starts a trial while fewer than the
budget's epochs have been trained; a run's best is the best val_accuracy among the first ``budget``
epochs trained, in time order.

A duplicate is a trial whose configuration (every parameter value) equals an earlier-asked trial's:
compute spent on a configuration the study already has or is running. Reported per tuner and number
of workers: duplicates as a share of trials (mean over seeds), trials, and the IQM of the best.

Tuners: ``tpe`` (the service's sampler as ``make_sampler`` builds it), ``tpe_liar`` (Optuna's
``TPESampler(constant_liar=True)``: running trials count as bad ones, Optuna's advice for parallel
workers) and ``random``, each with the median pruner (the default).

    python bench/parallel.py                              # mlp and cnn, 10 seeds, 1/4/8 workers
    python bench/parallel.py --spaces mlp --seeds 3 --workers 8 --trials 30
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, curves  # noqa: E402

TUNERS = {"tpe": ("tpe", "median"), "tpe_liar": ("tpe", "median"), "random": ("random", "median")}


def _sampler(tuner: str, config, seed: int):
    import optuna

    from search.execution.worker import space_hyperparameters
    from search.space.samplers import make_sampler

    if tuner == "tpe_liar":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return make_sampler(config.sampler, seed, space_hyperparameters(config), config.fixed)


def parallel_run(tuner: str, searcher, space: str, recorded_seed: int, seed: int, workers: int, budget: int,
                 table_path: Path, time_scale: float) -> dict:
    """One study searched by ``workers`` threads until ``budget`` epochs are trained."""
    import keras
    import optuna

    from bench.default_vs_random import replay_trial
    from bench.spaces import replay
    from search.space.pruners import make_pruner
    from search.space.samplers import worker_seed

    config = copy.deepcopy(searcher.config)
    storage = optuna.storages.InMemoryStorage()
    name = f"parallel-{seed}"
    first = optuna.create_study(study_name=name, storage=storage,
                                direction=config.optuna_direction)
    for params in searcher.baseline:
        first.enqueue_trial(params)
    lock, epochs, errors = threading.Lock(), [], []

    class Clock(keras.callbacks.Callback):
        """Each replayed epoch takes its recorded time (scaled) and is logged in time order."""

        def on_epoch_end(self, epoch, logs=None):
            time.sleep(logs["replay_seconds"] * time_scale)
            value = logs.get("val_accuracy")
            with lock:
                epochs.append((None if value is None or value != value else float(value), logs["replay_seconds"]))

    # Each worker reads a copy of the configuration: Keras Tuner's from_config changes what it reads.
    samplers = [_sampler(tuner, copy.deepcopy(searcher.config), worker_seed(seed, slot)) for slot in range(workers)]

    def worker(slot: int) -> None:
        try:
            study = optuna.load_study(study_name=name, storage=storage, sampler=samplers[slot],
                                      pruner=make_pruner(config.pruner, config.epochs))
            hypermodel = replay.Replay(space=space, seed=recorded_seed, table_path=table_path, partial=False)
            while True:
                with lock:
                    if len(epochs) >= budget:
                        return
                replay_trial(study, config, hypermodel, callbacks=[Clock()])
        except Exception as exc:  # a failing worker is a failing benchmark, not a quiet one
            errors.append(f"worker {slot}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("; ".join(errors))
    trials = first.get_trials(deepcopy=False)
    seen, duplicates = set(), 0
    for t in sorted(trials, key=lambda t: t.number):
        key = tuple(sorted(t.params.items()))
        duplicates += key in seen
        seen.add(key)
    scored = [v for v, _ in epochs[:budget] if v is not None]
    return {"space": space, "tuner": tuner, "workers": workers, "seed": seed, "trials": len(trials),
            "duplicates": duplicates, "duplicate_share": duplicates / len(trials),
            "best": max(scored) if scored else None, "epochs": len(epochs),
            "wall_s": round(time.perf_counter() - started, 2)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="mlp,cnn")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--workers", default="1,4,8")
    p.add_argument("--trials", type=int, default=30, help="budget in trials' compute (x E epochs; default 30)")
    p.add_argument("--tuners", default=",".join(TUNERS))
    p.add_argument("--time-scale", type=float, default=0.05,
                   help="wall seconds an epoch sleeps per recorded CPU second (default 0.05)")
    p.add_argument("--table", default=str(curves.TABLE))
    p.add_argument("--out", default=None, help="JSON path (default bench/results/parallel.json)")
    args = p.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import logging

    import optuna
    from scipy import stats

    from bench.default_vs_random import prepare_searcher

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("search").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table = curves.Table.load(Path(args.table))
    epochs = table.headers[0]["settings"]["epochs"]
    workers = [int(w) for w in args.workers.split(",")]
    tuners = [t.strip() for t in args.tuners.split(",") if t.strip()]
    unknown = [t for t in tuners if t not in TUNERS]
    if unknown:
        p.error(f"unknown tuner(s) {unknown}: {', '.join(TUNERS)}")
    runs, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as work:
        searchers = {t: prepare_searcher(*TUNERS[t], epochs, Path(work)) for t in dict.fromkeys(
            "tpe" if t == "tpe_liar" else t for t in tuners)}
        for space in [s.strip() for s in args.spaces.split(",") if s.strip()]:
            recorded = [s for s in table.seeds(space) if table.complete(space, s)]
            for seed in range(args.seeds):
                for tuner in tuners:
                    for n in workers:
                        searcher = searchers["tpe" if tuner == "tpe_liar" else tuner]
                        r = parallel_run(tuner, searcher, space, recorded[seed % len(recorded)], seed, n,
                                         args.trials * epochs, Path(args.table), args.time_scale)
                        runs.append(r)
                        common.say(f"{space} seed {seed} {tuner} x{n}: {r['trials']} trials, "
                                   f"{r['duplicates']} duplicates, best {common.fmt(r['best'], 4)} ({r['wall_s']} s)")
    rows = []
    for space in dict.fromkeys(r["space"] for r in runs):
        for tuner in tuners:
            for n in workers:
                mine = [r for r in runs if (r["space"], r["tuner"], r["workers"]) == (space, tuner, n)]
                rows.append({"space": space, "tuner": tuner, "workers": n, "seeds": len(mine),
                             "trials": statistics.mean(r["trials"] for r in mine),
                             "duplicate_share": statistics.mean(r["duplicate_share"] for r in mine),
                             "max_duplicate_share": max(r["duplicate_share"] for r in mine),
                             "best_iqm": float(stats.trim_mean([r["best"] or 0.0 for r in mine], 0.25))})
    payload = {"benchmark": "parallel", "machine": common.machine(), "settings": vars(args),
               "wall_s": round(time.perf_counter() - started, 1), "rows": rows, "runs": runs}
    path = common.write_results("parallel", payload, args.out)
    common.print_table(f"Parallel workers on the recorded curves ({args.seeds} seeds, {args.trials} trials' compute)",
                       ["space", "tuner", "workers", "trials", "duplicates % (mean)", "worst seed %", "best (IQM)"],
                       [[r["space"], r["tuner"], r["workers"], f"{r['trials']:.1f}",
                         f"{100 * r['duplicate_share']:.1f}", f"{100 * r['max_duplicate_share']:.1f}",
                         f"{r['best_iqm']:.4f}"] for r in rows])
    common.say(f"results: {path}")
    return payload


if __name__ == "__main__":
    main()
