"""Search efficiency against Keras Tuner's own tuners, at an equal budget of epochs trained.

For each space and seed, the same hypermodel (the space module's, unchanged) and the same data
split (``search._datasets.load(DATA, seed)``) are searched by:

- Keras Tuner ``Hyperband`` (max_epochs E, factor 3, one iteration by default): it runs first and sets the
  budget B, the epochs it trained (counting the epochs its promoted trials train on);
- Keras Tuner ``RandomSearch`` and ``BayesianOptimization``: ceil(B / E) trials of E epochs;
- this service, TPE without pruning: ``--trials ceil(B/E) --epochs E --pruner none``;
- this service, TPE with a pruner (``--pruner median``, ``--pruner hyperband``): trials of at most
  E epochs until B epochs are spent (the study is resumed with more trials until then).

Our studies run through the service's own code: ``search.commands.start.prepare`` (what ``search start``
does first) and the worker loop (``search.execution.worker(study, slot=0)``, what ``search start`` spawns), in
this process, so no process start-up is repeated. Every epoch trained by any tuner is logged in
order with its val_accuracy; a tuner's curve is the best val_accuracy seen after e epochs (a
trial's score is its best epoch, Keras Tuner's rule, so any epoch seen counts). Reported per space:
the best at B/4, B/2 and B (median and min..max over seeds) and the epochs each tuner needed to
reach Keras Tuner Hyperband's final best of the same seed (median; "-" where a tuner did not
reach it within B in most seeds). Target: the same best in at most half the epochs.

    python bench/efficiency.py                                      # small: mlp, 2 seeds, E=4
    python bench/efficiency.py --spaces cnn --max-epochs 4          # the cnn space, 2 seeds
    python bench/efficiency.py --spaces cnn,mlp --seeds 5 --max-epochs 9   # the full run
    python bench/efficiency.py --replay         # on the recorded curves, 30 seeds (bench/replay_efficiency.py)

Keras Tuner's RandomSearch and BayesianOptimization start from random configurations (BayesianOptimization
samples 3 x the number of hyperparameters at random before its Gaussian process takes over); this
service runs the space's default configuration first, then TPE, whose first 10 trials are random
(Optuna's n_startup_trials). At budgets of a few dozen epochs every tuner is mostly sampling at
random: read small runs with that in mind.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

SPACES = {"cnn": common.REPO / "spaces" / "cnn.py", "mlp": common.BENCH / "spaces" / "mlp.py"}
TUNERS = ("kt_hyperband", "kt_random", "kt_bayes", "tpe", "tpe_median", "tpe_hyperband")
LABELS = {"kt_hyperband": "KT Hyperband", "kt_random": "KT RandomSearch",
          "kt_bayes": "KT BayesianOptimization", "tpe": "search TPE",
          "tpe_median": "search TPE + median pruner", "tpe_hyperband": "search TPE + hyperband pruner"}

EPOCH_LOG: list[float] = []  # val_accuracy of every epoch Keras Tuner trains, in order


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="mlp",
                   help="cnn (spaces/cnn.py), mlp (bench/spaces/mlp.py) or paths of space files (default mlp)")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (default 2)")
    p.add_argument("--max-epochs", type=int, default=4, help="E: epochs of a full trial (default 4)")
    p.add_argument("--factor", type=int, default=3, help="Hyperband's reduction factor (default 3)")
    p.add_argument("--hyperband-iterations", type=int, default=1,
                   help="Keras Tuner Hyperband's iterations: a larger budget B (default 1)")
    p.add_argument("--tuners", default=",".join(TUNERS), help=f"subset of {','.join(TUNERS)}")
    p.add_argument("--data", default="digits")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/efficiency.json)")
    p.add_argument("--replay", action="store_true",
                   help="search the recorded learning curves instead of training (bench/replay_efficiency.py; "
                        "its own flags: --replay --help)")
    p.add_argument("--report", metavar="JSON", default=None,
                   help="print the tables of a finished run's JSON again (nothing is run)")
    args = p.parse_args(argv)
    args.spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    args.tuners = [t.strip() for t in args.tuners.split(",") if t.strip()]
    for t in args.tuners:
        if t not in TUNERS:
            p.error(f"unknown tuner {t!r}")
    if "kt_hyperband" not in args.tuners:
        p.error("kt_hyperband sets the budget: keep it in --tuners")
    args.tuners = ["kt_hyperband"] + [t for t in args.tuners if t != "kt_hyperband"]
    return args


# ---------------------------------------------------------------------------------------------
# Keras Tuner


def _patch_keras_tuner_tensorboard() -> None:
    """Keras Tuner 1.4.8 imports ``tensorboard`` in every trial on the TensorFlow backend, to patch
    TensorBoard callbacks; the benchmark passes none, and tensorboard need not be installed (it is
    not here, and this project does not depend on it): skip the import when no TensorBoard
    callback is given."""
    from keras_tuner.src.engine import tuner as tuner_module

    original = tuner_module.Tuner._configure_tensorboard_dir
    if getattr(original, "__bench__", False):
        return

    def configure(self, callbacks, trial, execution=0):
        if any(cb.__class__.__name__ == "TensorBoard" for cb in callbacks):
            return original(self, callbacks, trial, execution)
        return None

    configure.__bench__ = True
    tuner_module.Tuner._configure_tensorboard_dir = configure


def run_keras_tuner(kind: str, space_path: str, seed: int, args, budget: int | None, work: Path) -> dict:
    import keras
    import keras_tuner as kt

    _patch_keras_tuner_tensorboard()

    from search import _datasets
    from search.space.loader import load_space

    class EpochLog(keras.callbacks.Callback):
        """Appends each epoch's val_accuracy to a module list (Keras Tuner deep-copies callbacks)."""

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_accuracy")
            EPOCH_LOG.append(float(value) if value is not None else float("nan"))

    space = load_space(space_path)
    dataset = _datasets.load(args.data, seed)
    _datasets.activate(dataset)
    common_kwargs = dict(objective=kt.Objective("val_accuracy", "max"), seed=seed,
                         directory=str(work), project_name=f"{kind}-{seed}", overwrite=True)
    if kind == "kt_hyperband":
        tuner = kt.Hyperband(space.hypermodel, max_epochs=args.max_epochs, factor=args.factor,
                             hyperband_iterations=args.hyperband_iterations, **common_kwargs)
    else:
        trials = math.ceil(budget / args.max_epochs)
        cls = kt.RandomSearch if kind == "kt_random" else kt.BayesianOptimization
        tuner = cls(space.hypermodel, max_trials=trials, **common_kwargs)
    EPOCH_LOG.clear()
    started = time.perf_counter()
    tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val),
                 epochs=args.max_epochs, callbacks=[EpochLog()], verbose=0)
    seconds = time.perf_counter() - started
    trials = len(tuner.oracle.trials)
    return {"epochs": list(EPOCH_LOG), "trials": trials, "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# this service


def run_ours(kind: str, space_path: str, seed: int, args, budget: int, work: Path) -> dict:
    import optuna

    from search.commands.start import prepare
    from search.execution.worker import run_worker
    from search.options import start_options
    pruner = {"tpe": "none", "tpe_median": "median", "tpe_hyperband": "hyperband"}[kind]
    url = f"sqlite:///{work / f'{kind}-{seed}.db'}"
    study = f"{kind}-{seed}"
    trials = math.ceil(budget / args.max_epochs)
    started = time.perf_counter()
    curve: list[float] = []
    for _ in range(20):
        prepared = prepare(start_options(
            space_path, study=study, storage=url, trials=trials, epochs=args.max_epochs,
            data=args.data, sampler="tpe", seed=seed, pruner=pruner))
        prepared.stored.storage.engine.dispose()
        run_worker(url, study, slot=0)  # slot 0: the sampler's seed is the study's
        store = optuna.storages.RDBStorage(url)
        done = sorted(optuna.load_study(study_name=study, storage=store).get_trials(deepcopy=False),
                      key=lambda t: t.number)
        store.engine.dispose()
        curve = []
        for t in done:
            curve.extend(float(v) for v in (t.user_attrs.get("history") or {}).get("val_accuracy", []))
        if pruner == "none" or len(curve) >= budget:
            break
        per_trial = len(curve) / max(1, len(done))
        trials = len(done) + max(1, math.ceil((budget - len(curve)) / max(per_trial, 1.0)))
    states = {}
    for t in done:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {"epochs": curve, "trials": len(done), "states": states,
            "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------------
# curves


def best_curve(values: list[float]) -> list[float]:
    best, out = float("-inf"), []
    for v in values:
        if v == v and v > best:  # NaN never counts
            best = v
        out.append(best)
    return out


def best_at(values: list[float], epochs: int) -> float | None:
    curve = best_curve(values[:epochs])
    return curve[-1] if curve and curve[-1] != float("-inf") else None


def epochs_to_reach(values: list[float], target: float, budget: int) -> int | None:
    for i, best in enumerate(best_curve(values[:budget])):
        if best >= target - 1e-9:
            return i + 1
    return None


def summarise(runs: list[dict], tuners: list[str]) -> list[dict]:
    rows = []
    for space in sorted({r["space"] for r in runs}, key=lambda s: [r["space"] for r in runs].index(s)):
        for tuner in tuners:
            mine = [r for r in runs if r["space"] == space and r["tuner"] == tuner]
            if not mine:
                continue
            row = {"space": space, "tuner": tuner, "seeds": len(mine)}
            for frac in (0.25, 0.5, 1.0):
                vals = [r[f"best_at_{frac}"] for r in mine if r[f"best_at_{frac}"] is not None]
                row[f"best_at_{frac}"] = {"median": common.median(vals), "min": min(vals, default=None),
                                          "max": max(vals, default=None)}
            reach = [r["epochs_to_target"] for r in mine]
            inf = [x if x is not None else math.inf for x in reach]
            med = common.median(inf)
            row["epochs_to_target"] = {"median": None if med is None or math.isinf(med) else med,
                                       "reached": sum(x is not None for x in reach), "values": reach}
            ratio = [(x / r["budget"]) if x is not None else None for x, r in zip(reach, mine)]
            frac = common.median([x if x is not None else math.inf for x in ratio])
            row["fraction_of_hyperband_budget"] = None if frac is None or math.isinf(frac) else frac
            row["seconds"] = common.median([r["seconds"] for r in mine])
            row["budget"] = common.median([r["budget"] for r in mine])
            rows.append(row)
    return rows


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--replay" in argv:  # on the recorded learning curves: bench/replay_efficiency.py
        from bench import replay_efficiency

        return replay_efficiency.main([a for a in argv if a != "--replay"])
    args = parse_args(argv)
    if args.report:
        payload = json.loads(Path(args.report).read_text())
        payload["summary"] = summarise(payload["runs"], payload["settings"]["tuners"])
        saved = payload["settings"]
        print_results(payload["summary"], argparse.Namespace(
            max_epochs=saved["max_epochs"], seeds=saved["seeds"], data=saved["data"]))
        return payload
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import logging
    import warnings

    logging.getLogger("search").setLevel(logging.ERROR)
    # Keras Tuner's Hyperband reloads a promoted trial's checkpoint; Keras warns when the optimizer
    # state does not match (the reloaded weights are used all the same).
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    info = common.machine()
    work = Path(tempfile.mkdtemp(prefix="bench-efficiency-"))
    common.say(f"efficiency: spaces {args.spaces}, seeds 0..{args.seeds - 1}, E={args.max_epochs}, "
               f"tuners {', '.join(args.tuners)}")
    runs = []
    try:
        for name in args.spaces:
            space_path = str(SPACES.get(name, Path(name)).resolve())
            for seed in range(args.seeds):
                budget = None
                target = None
                for tuner in args.tuners:
                    run_dir = work / f"{Path(space_path).stem}-{seed}-{tuner}"
                    run_dir.mkdir()
                    if tuner.startswith("kt_"):
                        result = run_keras_tuner(tuner, space_path, seed, args, budget, run_dir)
                    else:
                        result = run_ours(tuner, space_path, seed, args, budget, run_dir)
                    if tuner == "kt_hyperband":
                        budget = len(result["epochs"])
                        target = best_at(result["epochs"], budget)
                    values = result["epochs"]
                    run = {"space": Path(space_path).stem, "seed": seed, "tuner": tuner,
                           "budget": budget, "target": target, "epochs_trained": len(values),
                           "trials": result["trials"], "states": result.get("states"),
                           "seconds": result["seconds"], "val_accuracy_per_epoch": values}
                    for frac in (0.25, 0.5, 1.0):
                        run[f"best_at_{frac}"] = best_at(values, max(1, round(budget * frac)))
                    run["epochs_to_target"] = epochs_to_reach(values, target, budget)
                    runs.append(run)
                    common.say(f"{run['space']} seed {seed} {LABELS[tuner]}: {len(values)} epochs in "
                               f"{result['trials']} trials, best {common.fmt(run['best_at_1.0'], 4)} "
                               f"at B={budget}, reached {common.fmt(target, 4)} after "
                               f"{run['epochs_to_target'] or '-'} epochs ({result['seconds']:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(runs, args.tuners)
    info["loadavg_end"] = common.loadavg()
    payload = {"benchmark": "efficiency", "machine": info, "settings": vars(args),
               "summary": summary, "runs": runs}
    path = common.write_results("efficiency", payload, args.out)
    print_results(summary, args)
    common.say(f"results: {path}")
    return payload


def print_results(summary: list[dict], args) -> None:
    def spread(d):
        if d["median"] is None:
            return "-"
        return f"{d['median']:.4f} ({d['min']:.4f}..{d['max']:.4f})"

    rows = []
    for row in summary:
        reach = row["epochs_to_target"]
        frac = row["fraction_of_hyperband_budget"]
        rows.append([row["space"], LABELS[row["tuner"]], common.fmt(row["budget"], 0),
                     spread(row["best_at_0.25"]), spread(row["best_at_0.5"]), spread(row["best_at_1.0"]),
                     f"{common.fmt(reach['median'], 0)} ({reach['reached']}/{row['seeds']})",
                     "-" if frac is None else f"{frac:.2f}",
                     common.fmt(row["seconds"], 0)])
    common.print_table(
        f"Search efficiency at equal epochs (E={args.max_epochs}, {args.seeds} seeds, {args.data})",
        ["space", "tuner", "budget B", "best @B/4", "best @B/2", "best @B", "epochs to HB best",
         "x B", "s"], rows,
        note="best val_accuracy seen after that many epochs: median (min..max) over seeds; epochs to "
             "HB best: median epochs to reach KT Hyperband's final best of the same seed (seeds that "
             "reached it within B); x B: that as a fraction of B (target: <= 0.5)")


if __name__ == "__main__":
    main()
