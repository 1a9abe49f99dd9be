"""Store scale: N = 50, 100, 200 simulated workers on one real local PostgreSQL server, no training.

Each simulated worker is a thread with a store of its own (``search.execution.faults.open_for_work``:
one engine and its pool, as one worker process has) and the real calls of the worker loop
(``search.execution.worker``): reap stale trials, claim a budget slot, ``study.ask``, three
suggestions, the trial's user attributes, its worker row's state, Optuna's heartbeat and the
worker row's (the real ``Heartbeat`` thread, every ``--heartbeat`` seconds), one ``trial.report``
per epoch while the trial "trains" (a sleep of T seconds in all), ``study.tell``. The threads are
spread over ``--processes`` processes (one Python process runs out of interpreter time long before
the store does). Measured per run:

- trials/s from the first claim to the last tell, against N / T (what the workers would do if the
  store cost nothing);
- p50 / p99 of each call, as the workers saw it;
- the server's client connections to the study's database (``pg_stat_activity``), sampled every
  0.5 s while the workers run: mean and peak, and per worker;
- lost trials (the budget less the trials told COMPLETE; a trial left RUNNING, WAITING or FAIL
  counts) and duplicated ones (a trial told twice, or more COMPLETE trials than the budget): both
  must be 0;
- the projection for 1,000 workers: the calls per second they would make at that T, and the
  connections they would need.

``--sqlalchemy-pool``: SQLAlchemy's default pool (5 kept, 10 more) instead of the product's, to
compare the connections.

    python bench/scale.py                                   # 50, 100, 200 workers; T = 30 s and 5 s
    python bench/scale.py --workers 50 --trial-seconds 30 --sqlalchemy-pool
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

STUDY = "scale"
SLEEP_SPACE = common.BENCH / "spaces" / "sleep.py"
CALLS = ("reap", "claim", "ask", "suggest", "attrs", "state", "heartbeat", "report", "tell")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="50,100,200", help="simulated workers per run (default 50,100,200)")
    p.add_argument("--trial-seconds", default="30,5", help="trial lengths T in seconds (default 30,5)")
    p.add_argument("--trials-per-worker", type=int, default=2, help="trials each worker runs (default 2)")
    p.add_argument("--epochs", type=int, default=5, help="reports per trial (default 5)")
    p.add_argument("--heartbeat", type=int, default=10, help="heartbeat seconds (default 10, the product's)")
    p.add_argument("--processes", type=int, default=4, help="processes the threads are spread over (default 4)")
    p.add_argument("--sqlalchemy-pool", action="store_true",
                   help="SQLAlchemy's default pool (5 kept + 10 overflow) instead of the product's, to compare")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/scale.json)")
    args = p.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    args.trial_seconds = [float(t) for t in args.trial_seconds.split(",")]
    return args


# ------------------------------------------------------------------------------ simulated workers


def _simulated_worker(url: str, slot: int, trial_seconds: float, epochs: int, start_at: float,
                      timings: dict, told: list, errors: list) -> None:
    import optuna

    from search.execution.faults import Heartbeat, fail_stale_trials, open_for_work
    from search.storage import workers as worker_states

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name].append(time.perf_counter() - t0)
        return result

    try:
        stored = open_for_work(url, STUDY)
        study = optuna.load_study(study_name=STUDY, storage=stored.storage,
                                  sampler=optuna.samplers.RandomSampler(seed=slot))
        worker_id = stored.workers.register(STUDY, socket.gethostname(), os.getpid(), slot, None)

        class TimedHeartbeat(Heartbeat):
            def beat(self):
                timed("heartbeat", super().beat)

        heartbeat = TimedHeartbeat(stored, worker_id)
        heartbeat.start()
        time.sleep(max(0.0, start_at - time.time()))
        try:
            while True:
                timed("reap", lambda: fail_stale_trials(study))
                if not timed("claim", lambda: stored.records.claim(STUDY)):
                    break
                trial = timed("ask", study.ask)
                heartbeat.trial_id = trial._trial_id
                heartbeat.beat()
                timed("state", lambda: stored.workers.set_state(worker_id, worker_states.RUNNING,
                                                                trial.number))
                timed("suggest", lambda: trial.suggest_float("lr", 1e-5, 1e-1, log=True))
                timed("suggest", lambda: trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"]))
                timed("suggest", lambda: trial.suggest_int("units", 16, 256, step=16))
                timed("attrs", lambda: trial.set_user_attr("worker", {"host": socket.gethostname(),
                                                                      "pid": os.getpid(), "slot": slot}))
                timed("attrs", lambda: trial.set_user_attr("attempt", 1))
                for epoch in range(epochs):
                    time.sleep(trial_seconds / epochs)
                    timed("report", lambda: trial.report(0.1 * epoch, epoch))
                heartbeat.trial_id = None
                timed("tell", lambda: study.tell(trial, 0.5))
                told.append(trial.number)
                timed("state", lambda: stored.workers.set_state(worker_id, worker_states.IDLE,
                                                                finished_trial=True))
        finally:
            heartbeat.stop()
            stored.workers.set_state(worker_id, worker_states.EXITED)
    except Exception as exc:  # counted and shown: a simulated worker that failed is a result
        errors.append(f"worker {slot}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _process(url: str, slots: list[int], trial_seconds: float, epochs: int, start_at: float, queue,
             sqlalchemy_pool: bool = False) -> None:
    if sqlalchemy_pool:
        from search.storage import engine

        engine.POOL_SIZE, engine.POOL_OVERFLOW = 5, 10  # SQLAlchemy's QueuePool defaults
    timings, told, errors = defaultdict(list), [], []
    threads = [threading.Thread(target=_simulated_worker, daemon=True,
                                args=(url, slot, trial_seconds, epochs, start_at, timings, told, errors))
               for slot in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put({"timings": dict(timings), "told": told, "errors": errors})


# ------------------------------------------------------------------------------------ one run


def _create_study(url: str, budget: int, epochs: int, heartbeat: int) -> None:
    os.environ["KERAS_BACKEND"] = "numpy"
    from search.commands.start import prepare
    from search.options import start_options

    prepare(start_options(str(SLEEP_SPACE), study=STUDY, storage=url, trials=budget, epochs=epochs,
                          pruner="none", sampler="random", heartbeat=heartbeat, grace=6 * heartbeat))


def run_one(server, workers: int, trial_seconds: float, args) -> dict:
    database = server.create_database()
    url = server.url(database)
    budget = workers * args.trials_per_worker
    _create_study(url, budget, args.epochs, args.heartbeat)
    start_at = time.time() + 20 + workers * 0.15  # every worker's store open before the clock starts
    queue = mp.get_context("spawn").Queue()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_process, args=(url, list(range(i, workers, args.processes)),
                                                trial_seconds, args.epochs, start_at, queue,
                                                args.sqlalchemy_pool))
             for i in range(args.processes)]
    for p in procs:
        p.start()
    samples = []
    results = []
    while len(results) < len(procs):
        now = time.time()
        if now >= start_at:
            samples.append(common.client_connections(server, database))
        try:
            results.append(queue.get(timeout=0.5))
        except Exception:
            pass
    for p in procs:
        p.join()
    import optuna

    timings, told, errors = defaultdict(list), [], []
    for r in results:
        for k, v in r["timings"].items():
            timings[k].extend(v)
        told += r["told"]
        errors += r["errors"]
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        raise SystemExit(f"{workers} workers, T = {trial_seconds:g} s: no trial completed; "
                         f"{len(errors)} workers failed, the first: {errors[:1]}")
    first = min(t.datetime_start for t in trials if t.datetime_start)
    last = max(t.datetime_complete for t in complete)
    seconds = (last - first).total_seconds()
    steady = samples[: max(1, len(samples) - 2)]
    row = {
        "workers": workers, "trial_seconds": trial_seconds, "budget": budget,
        "seconds": seconds,
        "trials_per_s": len(complete) / seconds, "ideal_trials_per_s": workers / trial_seconds,
        "lost": budget - len(complete), "duplicated": (len(told) - len(set(told))) + max(0, len(complete) - budget),
        "not_complete": sum(1 for t in trials if t.state.name != "COMPLETE"),
        "errors": errors,
        "connections_mean": sum(steady) / len(steady) if steady else None,
        "connections_peak": max(samples) if samples else None,
        "calls": {k: {"n": len(v), "p50_ms": common.ms(common.percentile(v, 50)),
                      "p99_ms": common.ms(common.percentile(v, 99))} for k, v in timings.items()},
    }
    calls_per_trial = sum(len(v) for v in timings.values()) / max(1, len(complete))
    row["calls_per_trial"] = calls_per_trial
    row["projection_1000"] = {"calls_per_s": 1000 / trial_seconds * calls_per_trial,
                              "connections": (row["connections_mean"] or 0) / workers * 1000}
    row["measured_calls_per_s"] = sum(len(v) for v in timings.values()) / seconds
    return row


# ------------------------------------------------------------------------------------ main


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    rows = []
    started = time.time()
    with common.postgres() as server:
        for trial_seconds in args.trial_seconds:
            for workers in args.workers:
                common.say(f"{workers} simulated workers, T = {trial_seconds:g} s")
                rows.append(run_one(server, workers, trial_seconds, args))
                for e in rows[-1]["errors"][:3]:
                    common.say(f"  {e}")
    table = []
    for r in rows:
        def cell(name, calls=r["calls"]):
            return common.p50_p99(calls, name)

        table.append([r["workers"], f"{r['trial_seconds']:g}", r["budget"],
                      f"{r['trials_per_s']:.2f} / {r['ideal_trials_per_s']:.2f}",
                      cell("claim"), cell("ask"), cell("report"), cell("tell"), cell("heartbeat"),
                      f"{r['connections_mean']:.0f} / {r['connections_peak']}",
                      f"{r['connections_mean'] / r['workers']:.2f}",
                      r["lost"], r["duplicated"], len(r["errors"]),
                      f"{r['projection_1000']['calls_per_s']:.0f} / {r['measured_calls_per_s']:.0f}"])
    common.print_table(
        "Store scale: simulated workers on one PostgreSQL server"
        + (" (SQLAlchemy's default pool)" if args.sqlalchemy_pool else ""),
        ["workers", "T s", "trials", "trials/s (ideal)", "claim", "ask", "report", "tell", "heartbeat",
         "conns mean/peak", "conns/worker", "lost", "dup", "errors", "calls/s: 1000 need / here"],
        table, note="claim .. heartbeat: p50 / p99 ms per call; conns: the server's client connections to the study's database")
    payload = {"args": {k: v for k, v in vars(args).items()}, "rows": rows, "machine": common.machine(),
               "seconds": time.time() - started}
    name = "scale" + ("_sqlalchemy_pool" if args.sqlalchemy_pool else "")
    path = common.write_results(name, payload, args.out)
    common.say(f"results: {path}")


if __name__ == "__main__":
    main()
