"""The regression check of issue 16 (item 6): on the recorded learning curves, does the service's
default search (``search start``'s sampler and pruner) beat random search at the same compute?

Both run through the service's own parts on an in-memory Optuna study, without a store and without
the per-trial Keras session reset of ``run_trial`` (a few ms a trial, so tens of seeds take
seconds): the study as ``search.commands.start.prepare`` makes it (the discovered space, the
default-first baseline trial), the worker's sampler (``make_sampler``, slot 0's seed) and pruner
(``make_pruner``), the trial's hyperparameters (``TrialHyperParameters``), the replay space's own
``build`` and ``fit`` (``bench/spaces/replay.py``) driving the worker's ``TrialCallback`` (its
reports, pruning and best epoch), and the tell the worker makes of it. Trials are added until the
compute budget (``--trials`` x E epochs, E = the table's 27) is spent; a run's score is the best
val_accuracy among the epochs trained within it.

Per benchmark seed s (recorded seed s mod the recorded seeds; the samplers seeded with s), two
paired figures, default against random: the best val_accuracy within the budget (difference
default - random), and the epochs each needed to first train an epoch at the grid's top value (the
best val_accuracy of the top 2% of its configurations, recorded; a run that never reaches it
within the budget counts the budget plus one epoch). Over seeds: the mean difference, a bootstrap
95% interval, how often each side wins, and a one-sided Wilcoxon signed-rank test
(``scipy.stats.wilcoxon``, ties dropped) that the default is better (higher best, fewer epochs). tests/unit/bench/test_default_vs_random.py runs it on the recorded mlp
grid and fails when the default no longer wins at p < 0.05.

    python bench/default_vs_random.py                       # mlp and cnn, 20 seeds, 30 trials' compute
    python bench/default_vs_random.py --spaces mlp --seeds 40 --trials 10,30
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, curves  # noqa: E402

REPLAY_SPACE = common.BENCH / "spaces" / "replay.py"
RANDOM = ("random", "none")  # Keras Tuner's RandomSearch, in the service: no pruning


@dataclass
class Searcher:
    """One (sampler, pruner) prepared once: its stored study configuration and baseline trial."""

    sampler: str
    pruner: str
    config: object  # search.options.StudyConfig
    baseline: list  # the queued trials' fixed params (the default-first trial)


def prepare_searcher(sampler: str | None, pruner: str | None, epochs: int, work: Path) -> Searcher:
    """The study ``search start`` would make with these settings (None: its default)."""
    import optuna

    from search.commands.start import prepare
    from search.options import start_options

    given = {k: v for k, v in (("sampler", sampler), ("pruner", pruner)) if v is not None}
    name = f"{sampler or 'default'}-{pruner or 'default'}"
    url = f"sqlite:///{work / f'{name}.db'}"
    prepared = prepare(start_options(str(REPLAY_SPACE), study=name, storage=url, trials=1, epochs=epochs,
                                     keep_best=0, **given))
    stored = prepared.stored
    queued = [dict(t.system_attrs["fixed_params"]) for t in
              stored.storage.get_all_trials(stored.study_id, deepcopy=False)
              if t.state == optuna.trial.TrialState.WAITING]
    stored.storage.engine.dispose()
    return Searcher(stored.config.sampler, stored.config.pruner, stored.config, queued)


def search_run(searcher: Searcher, hypermodel, seed: int, budget: int) -> list[tuple]:
    """The epochs one search trains, in order, as (val_accuracy or None, recorded s), until
    ``budget`` epochs are spent."""
    import optuna

    from search.execution.worker import space_hyperparameters
    from search.space.pruners import make_pruner
    from search.space.samplers import make_sampler, worker_seed

    config = copy.deepcopy(searcher.config)  # Keras Tuner's from_config changes what it reads
    study = optuna.create_study(
        study_name=f"replay-{seed}",  # Hyperband's brackets hash the study's name: a fixed one repeats them
        direction=config.optuna_direction,
        sampler=make_sampler(config.sampler, worker_seed(seed, 0), space_hyperparameters(config),
                             config.fixed),
        pruner=make_pruner(config.pruner, config.epochs))
    for params in searcher.baseline:
        study.enqueue_trial(params)
    run: list[tuple] = []
    while len(run) < budget:
        run.extend(replay_trial(study, config, hypermodel))
    return run


def replay_trial(study, config, hypermodel, callbacks=()) -> list[tuple]:
    """Ask one trial of ``study``, replay it as the worker's trial does (``TrialHyperParameters``,
    the space's build/fit driving ``TrialCallback``, then the worker's tell) and return its epochs
    as (val_accuracy or None, recorded s). ``callbacks`` run after the trial's own, each epoch."""
    from optuna.trial import TrialState

    from search.execution.callbacks import TrialCallback
    from search.space.bridge import TrialHyperParameters

    trial = study.ask()
    hp = TrialHyperParameters(trial, fixed=config.fixed)
    model = hypermodel.build(hp)
    callback = TrialCallback(trial, config.objective, config.direction)
    hypermodel.trained.clear()
    hypermodel.fit(hp, model, epochs=config.epochs, callbacks=[callback, *callbacks])
    diverged = callback.nan_epoch is not None or callback.best_value is None
    if diverged:
        study.tell(trial, state=TrialState.FAIL)
    elif callback.pruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, callback.best_value)
    return [(None if diverged else value, cost) for _, _, value, cost in hypermodel.trained]


def best_within(run: list[tuple], epochs: int) -> float | None:
    scored = [v for v, _ in run[:epochs] if v is not None]
    return max(scored) if scored else None


def epochs_to_reach(run: list[tuple], target: float, epochs: int) -> int:
    """Epochs until the run first trains an epoch at ``target`` or better (``epochs + 1``: not
    within the budget)."""
    for i, (value, _) in enumerate(run[:epochs]):
        if value is not None and value >= target:
            return i + 1
    return epochs + 1


def top_value(table: curves.Table, space: str, seeds: list[int], share: float = 0.02) -> float:
    """The best val_accuracy of the top ``share`` of the grid's configurations (per recorded seed,
    the lowest of them over seeds)."""
    values = []
    for seed in seeds:
        bests = sorted((max(v for v in c["epochs"]["val_accuracy"] if v is not None)
                        for (sp, sd, _), c in table.curves.items() if sp == space and sd == seed),
                       reverse=True)
        values.append(bests[max(0, int(len(bests) * share) - 1)])
    return min(values)


def _paired(diff, better: str) -> dict:
    """Mean, bootstrap 95% interval, wins and the one-sided Wilcoxon p of paired differences
    default - random (``better``: "greater" or "less", the default's side)."""
    import numpy as np
    from scipy import stats

    diff = np.asarray(diff, dtype=float)
    if np.ptp(diff) > 0:
        ci = stats.bootstrap((diff,), np.mean, confidence_level=0.95, method="percentile",
                             random_state=0).confidence_interval
        low, high = float(ci[0]), float(ci[1])
    else:
        low = high = float(diff[0])
    nonzero = diff[diff != 0]
    p = float(stats.wilcoxon(nonzero, alternative=better).pvalue) if len(nonzero) else 1.0
    sign = 1 if better == "greater" else -1
    return {"mean": float(diff.mean()), "low": low, "high": high, "default_wins": int((sign * diff > 0).sum()),
            "random_wins": int((sign * diff < 0).sum()), "ties": int((diff == 0).sum()), "p": p}


def compare(space: str, seeds: int, trials: list[int], table_path: Path, work: Path,
            default=(None, None)) -> list[dict]:
    """Per budget (trials x E epochs): the paired figures of the default against random search."""
    import numpy as np

    from bench.spaces import replay

    table = curves.Table.load(table_path)
    epochs = table.headers[0]["settings"]["epochs"]
    recorded = [s for s in table.seeds(space) if table.complete(space, s)]
    if not recorded:
        raise SystemExit(f"{table_path}: no recorded seed of {space} is complete yet")
    searchers = {"default": prepare_searcher(*default, epochs, work),
                 "random": prepare_searcher(*RANDOM, epochs, work)}
    hypermodels = {s: replay.Replay(space=space, seed=s, table_path=table_path, partial=False)
                   for s in recorded}
    top = max(trials) * epochs
    runs = {name: [search_run(searcher, hypermodels[recorded[seed % len(recorded)]], seed, top)
                   for seed in range(seeds)] for name, searcher in searchers.items()}
    target = top_value(table, space, recorded)
    rows = []
    for k in trials:
        budget = k * epochs
        best = {name: np.array([best_within(r, budget) or 0.0 for r in rs]) for name, rs in runs.items()}
        reach = {name: np.array([epochs_to_reach(r, target, budget) for r in rs]) for name, rs in runs.items()}
        rows.append({"space": space, "trials": k, "epochs": budget, "seeds": seeds,
                     "recorded_seeds": recorded, "target": target,
                     "default": f"{searchers['default'].sampler} + {searchers['default'].pruner}",
                     "default_best": float(best["default"].mean()), "random_best": float(best["random"].mean()),
                     "best": _paired(best["default"] - best["random"], "greater"),
                     "default_reach": float(np.median(reach["default"])),
                     "random_reach": float(np.median(reach["random"])),
                     "default_reached": int((reach["default"] <= budget).sum()),
                     "random_reached": int((reach["random"] <= budget).sum()),
                     "reach": _paired(reach["default"] - reach["random"], "less")})
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="mlp,cnn")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--trials", default="30", help="budgets in trials' compute (x E epochs), e.g. 10,30")
    p.add_argument("--table", default=str(curves.TABLE))
    p.add_argument("--default", action="append", default=None, metavar="SAMPLER:PRUNER",
                   help="compare this candidate (e.g. tpe:asha) instead of search start's default; repeat "
                        "it to compare several (each against the same random runs)")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    candidates = [(None, None)]
    if args.default:
        try:
            candidates = [tuple(c.split(":")) for c in args.default]
            if any(len(c) != 2 for c in candidates):
                raise ValueError
        except ValueError:
            p.error("--default takes SAMPLER:PRUNER, e.g. tpe:asha")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("search").setLevel(logging.ERROR)
    trials = sorted({int(t) for t in args.trials.split(",")})
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-default-") as work:
        for space in [s.strip() for s in args.spaces.split(",") if s.strip()]:
            for i, candidate in enumerate(candidates):
                (Path(work) / f"{space}-{i}").mkdir()
                rows += compare(space, args.seeds, trials, Path(args.table), Path(work) / f"{space}-{i}",
                                candidate)
    print(f"default vs random search on the recorded curves ({time.perf_counter() - started:.0f} s, "
          f"{args.seeds} seeds)")
    print(f"{'space':6} {'trials':>6} {'epochs':>6} {'default':16} {'best: default':>13} {'random':>7} "
          f"{'diff [95% CI]':>25} {'wins d/r/tie':>12} {'p':>6}   {'epochs to top':>13} {'target':>6} "
          f"{'default':>7} {'random':>7} {'reached d/r':>11} {'wins d/r/tie':>12} {'p':>6}")
    for r in rows:
        b, e = r["best"], r["reach"]
        print(f"{r['space']:6} {r['trials']:>6} {r['epochs']:>6} {r['default']:16} {r['default_best']:13.4f} "
              f"{r['random_best']:7.4f} {b['mean']:+8.4f} [{b['low']:+.4f}, {b['high']:+.4f}] "
              f"{b['default_wins']:>4}/{b['random_wins']}/{b['ties']:<5} {b['p']:6.3f}   {'':>13} "
              f"{r['target']:6.4f} {r['default_reach']:7.0f} {r['random_reach']:7.0f} "
              f"{r['default_reached']:>5}/{r['random_reached']:<5} {e['default_wins']:>4}/{e['random_wins']}/"
              f"{e['ties']:<5} {e['p']:6.3f}")
    if args.out:
        common.write_results("default_vs_random", {"benchmark": "default_vs_random", "machine": common.machine(),
                                                   "settings": vars(args), "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main()
