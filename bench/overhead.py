"""Overhead: the same N trials run by plain Keras in one loop and by ``search start`` with one worker.

(b) ``search start SPACE --trials N --epochs E --workers 1 --pruner none --seed S`` runs first and
chooses the configurations (TPE, the space's default first); (a) a plain Keras loop in a fresh
process then trains exactly those configurations, with the same data split, seeds and epochs:

    for each configuration: keras.backend.clear_session(); keras.utils.set_random_seed(seed)
                            model = build(hp); fit(hp, model, x, y, validation_data=..., epochs=E)

(``clear_session`` is what Keras advises for models built in a loop; Keras Tuner does it too.)
Reported: wall time (b)/(a) end to end (processes started to exited) and for the trial loops only
(the worker's first claim to its last tell, against the plain loop), the overhead per trial in ms,
and where it goes: claim, ask, the bridge's suggestions, per-epoch reports, record, tell, the
worker's bookkeeping and the runner's ``clear_session``/``gc.collect``, timed inside the worker
by the bench probe (bench/probe) around the calls of the worker loop.

    python bench/overhead.py                           # 8 trials of 5 epochs, cnn on digits
    python bench/overhead.py --trials 20 --rounds 2    # larger; rounds alternate (b) and (a)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

# Calls of the worker loop, grouped as the report shows them (name: probe events summed per trial).
PARTS = {
    "claim + reap": ["claim", "reap"],
    "ask (sampler)": ["ask"],
    "bridge (suggest)": ["bridge"],
    "epoch reports": ["report", "should_prune"],
    "record (user attrs)": ["record"],
    "tell": ["tell"],
    "checkpoint": ["checkpoint_keep", "checkpoint_settle"],
    "bookkeeping": ["set_state", "beat", "get_trial", "set_user_attr", "study_record", "get_all_trials"],
    "second gc.collect": ["gc_collect"],
    "set_random_seed": ["set_random_seed"],
}
# Parts the plain loop does too: shown as search minus plain.
SHARED = ("clear_session (vs plain)", "build + fit (vs plain)")


INSIDE_TRIAL = {"bridge", "report", "should_prune", "clear_session", "gc_collect", "set_random_seed",
                "build", "fit"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=str(common.REPO / "spaces" / "cnn.py"), help="space file (default spaces/cnn.py)")
    p.add_argument("--trials", type=int, default=8, help="trials (default 8)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="digits")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    p.add_argument("--set", dest="fixed", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a hyperparameter (passed to search start and used by the plain loop alike)")
    p.add_argument("--rounds", type=int, default=2,
                   help="pairs of runs, in alternating order: (b),(a) then (a),(b) ... (default 2)")
    p.add_argument("--callback-ab", type=int, default=3,
                   help="pairs of fits of the first configuration without / with search's trial "
                        "callback, in the plain process (default 3; 0: none)")
    p.add_argument("--storage", default=None,
                   help="store URL for (b) (default: a SQLite file in a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/overhead.json)")
    p.add_argument("--plain-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# (a): the plain Keras loop, in its own process


def plain_child(config_path: str) -> None:
    t_process = float(os.environ.get("BENCH_T0", time.time()))
    job = json.loads(Path(config_path).read_text())
    import keras
    import keras_tuner as kt

    from search import _datasets
    from search.space.loader import load_space

    space = load_space(job["space"])
    objective, direction = space.objective.name, space.objective.direction
    dataset = _datasets.load(job["data"], job["seed"])
    ready = time.time()
    rows = []
    loop_start = time.perf_counter()
    for item in job["trials"]:
        t = time.perf_counter()
        keras.backend.clear_session()
        c1 = time.perf_counter()
        keras.utils.set_random_seed(item["seed"])
        _datasets.activate(dataset)
        hp = kt.HyperParameters()
        hp.values = dict(item["values"])
        b0 = time.perf_counter()
        model = space.hypermodel.build(hp)
        b1 = time.perf_counter()
        trained_on = _datasets.in_use()
        kwargs = dict(validation_data=(trained_on.x_val, trained_on.y_val), epochs=job["epochs"], verbose=0)
        if not space.custom_fit and "batch_size" in hp.values:
            kwargs["batch_size"] = hp.values["batch_size"]
        history = space.hypermodel.fit(hp, model, trained_on.x_train, trained_on.y_train, **kwargs)
        f1 = time.perf_counter()
        curve = history.history.get(objective, []) if hasattr(history, "history") else []
        best = (max(curve) if direction == "max" else min(curve)) if curve else None
        rows.append({"number": item["number"], "seconds": f1 - t, "clear_session_s": c1 - t,
                     "build_s": b1 - b0, "fit_s": f1 - b1, "best": best})
    loop_s = time.perf_counter() - loop_start
    t_ab = time.perf_counter()
    ab = callback_ab(job, space, dataset) if job.get("callback_ab") else None
    ab_s = time.perf_counter() - t_ab
    Path(job["result"]).write_text(json.dumps({"startup_s": ready - t_process, "loop_s": loop_s,
                                               "trials": rows, "callback_ab": ab,
                                               "callback_ab_s": ab_s}))


def callback_ab(job: dict, space, dataset) -> dict:
    """The first configuration fitted again, alternately without callbacks and with search's
    trial callback (reporting to an in-memory Optuna trial, so no store is involved): what the
    callback itself costs inside fit, measured in one process, pair by pair."""
    import keras
    import keras_tuner as kt
    import optuna

    from search import _datasets
    from search.execution.callbacks import TrialCallback

    item = job["trials"][0]
    study = optuna.create_study(direction="maximize")
    times = {"plain": [], "callback": []}
    for i in range(2 * job["callback_ab"]):
        kind = "plain" if i % 2 == 0 else "callback"
        keras.backend.clear_session()
        keras.utils.set_random_seed(item["seed"])
        _datasets.activate(dataset)
        hp = kt.HyperParameters()
        hp.values = dict(item["values"])
        model = space.hypermodel.build(hp)
        trained_on = _datasets.in_use()
        callbacks = []
        if kind == "callback":
            callbacks = [TrialCallback(study.ask(), space.objective.name, space.objective.direction)]
        kwargs = dict(validation_data=(trained_on.x_val, trained_on.y_val), epochs=job["epochs"],
                      verbose=0, callbacks=callbacks)
        if not space.custom_fit and "batch_size" in hp.values:
            kwargs["batch_size"] = hp.values["batch_size"]
        t = time.perf_counter()
        space.hypermodel.fit(hp, model, trained_on.x_train, trained_on.y_train, **kwargs)
        times[kind].append(time.perf_counter() - t)
    return {"trial": item["number"], "pairs": job["callback_ab"], "fit_s": times,
            "median_plain_s": sorted(times["plain"])[len(times["plain"]) // 2],
            "median_callback_s": sorted(times["callback"])[len(times["callback"]) // 2]}


# ---------------------------------------------------------------------------------------------
# (b) and the comparison


def run_search_start(args, work: Path, tag: str) -> dict:
    store = args.storage or f"sqlite:///{work / f'{tag}.db'}"
    probe_dir = work / f"probe-{tag}"
    probe_dir.mkdir()
    cmd = ["start", str(Path(args.space).resolve()), "--study", f"overhead-{tag}", "--storage", store,
           "--trials", str(args.trials), "--epochs", str(args.epochs), "--workers", "1",
           "--pruner", "none", "--seed", str(args.seed), "--data", args.data, "--sampler", args.sampler]
    for item in args.fixed:
        cmd += ["--set", item]
    env = common.child_env(probe_dir=str(probe_dir))
    started = time.time()
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "search", *cmd], cwd=work, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.perf_counter() - t
    (work / f"{tag}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"search start failed (exit {proc.returncode}):\n{common.tail(proc.stdout + proc.stderr)}")
    import optuna

    study = optuna.load_study(study_name=f"overhead-{tag}", storage=store)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    probes = common.read_probes(probe_dir, role=None)
    return {"store": store, "wall_s": wall, "started": started, "trials": trials, "probes": probes,
            "output": proc.stdout}


def run_plain(args, work: Path, tag: str, search_run: dict) -> dict:
    items = []
    for t in search_run["trials"]:
        seed = t.user_attrs.get("seed", args.seed * 100_003 + t.number)
        items.append({"number": t.number, "seed": seed, "values": t.user_attrs["hp_values"]})
    job = {"space": str(Path(args.space).resolve()), "data": args.data, "seed": args.seed,
           "epochs": args.epochs, "trials": items, "callback_ab": args.callback_ab,
           "result": str(work / f"plain-{tag}.json")}
    job_path = work / f"plain-{tag}-job.json"
    job_path.write_text(json.dumps(job))
    env = common.child_env()
    t0 = time.time()
    env["BENCH_T0"] = repr(t0)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--plain-child", str(job_path)],
                          cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"plain loop failed (exit {proc.returncode}):\n{common.tail(proc.stdout + proc.stderr)}")
    result = json.loads(Path(job["result"]).read_text())
    # The plain process's wall time without the callback check that ran after its loop.
    result["wall_s"] = wall - result.get("callback_ab_s", 0.0)
    return result


def worker_breakdown(probes: list[dict], n_trials: int) -> dict:
    workers = [d for d in probes if d["role"] == "worker"]
    if len(workers) != 1:
        raise RuntimeError(f"expected the probe of one worker, found {len(workers)}")
    dump = workers[0]
    main = [e for e in dump["events"] if e[5] == "MainThread"]
    top = [e for e in main if e[3] == 0]
    reaps = [e for e in top if e[0] == "reap"]
    loop_start = min(e[1] for e in reaps)
    loop_end = max(e[1] + e[2] for e in top)
    per_name = defaultdict(float)
    for name, start, seconds, depth, trial, thread in main:
        # Calls made inside run_trial are counted at any depth (they never nest in each other,
        # except the bridge and the epoch reports inside build/fit); store calls only when the
        # loop made them (a read inside tell is part of tell).
        if name in INSIDE_TRIAL or depth == 0:
            per_name[name] += seconds
    parts = {label: sum(per_name.get(n, 0.0) for n in names) / n_trials for label, names in PARTS.items()}
    inside = (per_name.get("bridge", 0.0) + per_name.get("report", 0.0)
              + per_name.get("should_prune", 0.0))
    return {
        "loop_s": loop_end - loop_start,
        "startup_s": loop_start - dump["started"],
        "per_trial_s": parts,
        "clear_session_s": per_name.get("clear_session", 0.0) / n_trials,
        # build and fit without the bridge and the epoch reports made inside them
        "build_fit_s": (per_name.get("build", 0.0) + per_name.get("fit", 0.0) - inside) / n_trials,
        "run_trial_s": per_name.get("run_trial", 0.0) / n_trials,
        "worker_cpu_s": dump["cpu_s"],
        "max_rss_mb": dump["max_rss_mb"],
        "transient_errors": len(dump.get("transient_errors", [])),
    }


def compare(args, search_run: dict, plain: dict) -> dict:
    n = len(search_run["trials"])
    states = defaultdict(int)
    for t in search_run["trials"]:
        states[t.state.name] += 1
    bd = worker_breakdown(search_run["probes"], n)
    plain_per_trial = plain["loop_s"] / n
    search_per_trial = bd["loop_s"] / n
    diffs = []
    by_number = {row["number"]: row for row in plain["trials"]}
    per_trial = []
    for t in search_run["trials"]:
        row = by_number.get(t.number, {})
        if t.value is not None and row.get("best") is not None:
            diffs.append(abs(t.value - row["best"]))
        per_trial.append({"number": t.number, "state": t.state.name, "value": t.value,
                          "plain_best": row.get("best"),
                          "trial_seconds": t.user_attrs.get("trial_seconds"),
                          "train_seconds": t.user_attrs.get("train_seconds"),
                          "plain_seconds": row.get("seconds")})
    plain_clear = sum(r["clear_session_s"] for r in plain["trials"]) / n
    plain_build_fit = sum(r["build_s"] + r["fit_s"] for r in plain["trials"]) / n
    parts = dict(bd["per_trial_s"])
    parts[SHARED[0]] = bd["clear_session_s"] - plain_clear
    parts[SHARED[1]] = bd["build_fit_s"] - plain_build_fit
    known = sum(parts.values())
    overhead = search_per_trial - plain_per_trial
    # The worker's own work per trial, timed directly (no training in it): robust to the noise of
    # a shared machine, which moves the training time of two runs by more than the overhead.
    direct = sum(v for k, v in parts.items() if k not in SHARED)
    return {
        "trials": n, "states": dict(states),
        "wall_search_s": search_run["wall_s"], "wall_plain_s": plain["wall_s"],
        "ratio_end_to_end": search_run["wall_s"] / plain["wall_s"],
        "loop_search_s": bd["loop_s"], "loop_plain_s": plain["loop_s"],
        "ratio_loop": bd["loop_s"] / plain["loop_s"],
        "plain_seconds_per_trial": plain_per_trial,
        "search_seconds_per_trial": search_per_trial,
        "overhead_ms_per_trial": 1000 * overhead,
        "parts_ms_per_trial": {k: 1000 * v for k, v in parts.items()},
        "parts_sum_ms": 1000 * known,
        "direct_overhead_ms_per_trial": 1000 * direct,
        "ratio_direct": (plain_per_trial + direct) / plain_per_trial,
        "rest_ms_per_trial": 1000 * (overhead - known),
        "clear_session_ms": {"search": 1000 * bd["clear_session_s"], "plain": 1000 * plain_clear},
        "build_fit_s_per_trial": {"search": bd["build_fit_s"], "plain": plain_build_fit},
        "startup_search_worker_s": bd["startup_s"], "startup_plain_s": plain["startup_s"],
        "worker_cpu_s": bd["worker_cpu_s"], "worker_max_rss_mb": bd["max_rss_mb"],
        "transient_store_errors": bd["transient_errors"],
        "max_abs_value_diff": max(diffs) if diffs else None,
        "callback_ab": plain.get("callback_ab"),
        "per_trial": per_trial,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.plain_child:
        plain_child(args.plain_child)
        return {}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = common.machine()
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    common.say(f"overhead: {args.trials} trials x {args.epochs} epochs of {args.space} on {args.data}, "
               f"{args.rounds} round(s); (b) search start, then (a) the plain loop")
    rounds = []
    try:
        previous = None
        for r in range(args.rounds):
            tag = f"r{r}"
            if previous is None or r % 2 == 0:
                search_run = run_search_start(args, work, tag)
                common.say(f"round {r + 1}: (b) search start {search_run['wall_s']:.1f} s")
                plain = run_plain(args, work, tag, search_run)
                common.say(f"round {r + 1}: (a) plain Keras {plain['wall_s']:.1f} s")
                order = "b,a"
            else:
                # The other order: the plain loop first, on the configurations search chose in the
                # previous round (a seeded study chooses the same ones again; checked below).
                plain = run_plain(args, work, tag, previous)
                common.say(f"round {r + 1}: (a) plain Keras {plain['wall_s']:.1f} s")
                search_run = run_search_start(args, work, tag)
                common.say(f"round {r + 1}: (b) search start {search_run['wall_s']:.1f} s")
                order = "a,b"
            result = compare(args, search_run, plain)
            result["order"] = order
            if previous is not None and order == "a,b":
                result["same_configurations"] = [t.user_attrs.get("hp_values") for t in previous["trials"]] == \
                    [t.user_attrs.get("hp_values") for t in search_run["trials"]]
            rounds.append(result)
            previous = search_run
    finally:
        if args.keep:
            common.say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    info["loadavg_end"] = common.loadavg()
    payload = {"benchmark": "overhead", "machine": info,
               "settings": {k: v for k, v in vars(args).items() if k != "plain_child"},
               "rounds": rounds}
    path = common.write_results("overhead", payload, args.out)
    print_results(rounds, args)
    common.say(f"results: {path}")
    return payload


def print_results(rounds: list[dict], args) -> None:
    rows = []
    for i, r in enumerate(rounds):
        rows.append([f"{i + 1} ({r.get('order', 'b,a')})", r["trials"], common.fmt(r["wall_plain_s"]),
                     common.fmt(r["wall_search_s"]), common.fmt(r["ratio_end_to_end"], 2),
                     common.fmt(r["loop_plain_s"]), common.fmt(r["loop_search_s"]),
                     common.fmt(r["ratio_loop"], 3), common.fmt(r["plain_seconds_per_trial"], 2),
                     common.fmt(r["overhead_ms_per_trial"], 0),
                     common.fmt(r["direct_overhead_ms_per_trial"], 0), common.fmt(r["ratio_direct"], 3)])
    if len(rounds) > 1:
        med = lambda key: common.median([r[key] for r in rounds])  # noqa: E731
        rows.append(["median", "", common.fmt(med("wall_plain_s")), common.fmt(med("wall_search_s")),
                     common.fmt(med("ratio_end_to_end"), 2), common.fmt(med("loop_plain_s")),
                     common.fmt(med("loop_search_s")), common.fmt(med("ratio_loop"), 3),
                     common.fmt(med("plain_seconds_per_trial"), 2), common.fmt(med("overhead_ms_per_trial"), 0),
                     common.fmt(med("direct_overhead_ms_per_trial"), 0), common.fmt(med("ratio_direct"), 3)])
    common.print_table(
        f"Overhead: {args.trials} trials x {args.epochs} epochs ({Path(args.space).name}, {args.data})",
        ["round (order)", "trials", "plain wall s", "search wall s", "ratio", "plain loop s",
         "search loop s", "loop ratio", "s/trial (plain)", "overhead ms/trial", "direct ms/trial",
         "direct ratio"], rows,
        note="wall: processes started to exited (search: coordinator + its worker); loop: first "
             "trial to last (search: the worker's first claim to its last tell); direct: the "
             "worker's own calls per trial outside build and fit, timed by the probe, and "
             "(plain s/trial + direct) / plain s/trial")
    parts = list(rounds[0]["parts_ms_per_trial"])
    rows = [[p] + [common.fmt(r["parts_ms_per_trial"][p], 1) for r in rounds] for p in parts]
    rows.append(["sum of the parts"] + [common.fmt(r["parts_sum_ms"], 1) for r in rounds])
    rows.append(["rest (loop glue, noise)"] + [common.fmt(r["rest_ms_per_trial"], 1) for r in rounds])
    rows.append(["overhead measured"] + [common.fmt(r["overhead_ms_per_trial"], 1) for r in rounds])
    common.print_table("Where the overhead goes (ms per trial, worker side)",
                       ["part"] + [f"round {i + 1}" for i in range(len(rounds))], rows)
    ab_rows = []
    for i, r in enumerate(rounds):
        ab = r.get("callback_ab")
        if ab:
            ab_rows.append([i + 1, ab["trial"], ab["pairs"], common.fmt(ab["median_plain_s"], 3),
                            common.fmt(ab["median_callback_s"], 3),
                            common.fmt(1000 * (ab["median_callback_s"] - ab["median_plain_s"]), 0)])
    if ab_rows:
        common.print_table("search's trial callback inside fit, same process, alternating fits",
                           ["round", "trial", "pairs", "fit s (no callback)", "fit s (callback)",
                            "difference ms"], ab_rows)


if __name__ == "__main__":
    main()
