"""Store scaling: trials that do no training, through the real worker loop, with 1..32 workers on
SQLite and on a local PostgreSQL server.

Each run is ``search start bench/spaces/sleep.py --workers N`` (a resume of a study pre-filled with
L stored trials). The sleep space's trials define five hyperparameters and sleep a fixed time; the
first trial of every worker waits at a barrier until all N workers have started (imports, data,
study), so the clock starts when they are all ready, not while they start up. Measured:

- trials per second from the barrier to the last trial's completion, and scaling efficiency
  (throughput(N) / (N * throughput(1))), also against pure sleeping (N / sleep);
- per-call latency of ``study.ask`` and ``study.tell`` (and the claim of a budget slot, the record
  of a trial's attributes) as the workers saw them, p50/p99, from the timing probe (bench/probe);
- transient store errors the workers rode out (``database is locked``, lost connections), failed
  trials, and workers that exited with an error ("lock errors").

The stored trials are added cheaply before the run (Optuna's ``add_trials`` with trials shaped like
real ones: parameters, per-epoch reports, the user attributes a worker records), once per store and
size, then copied for every run (a file copy, or ``CREATE DATABASE ... TEMPLATE``).

    python bench/store_scaling.py                                  # default: about 10 minutes here (both stores)
    python bench/store_scaling.py --workers 1,2,4,8,16,32 --levels 100,1000,5000 --sleep 1.0 \\
        --trials-per-worker 10                                     # the full run

Workers run the numpy Keras backend with TensorFlow's import blocked (they train nothing; see
bench/README.md): about 0.4 GB each instead of 0.8 GB. Runs that would not fit in the available
memory are skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

SLEEP_SPACE = common.BENCH / "spaces" / "sleep.py"
STUDY = "sleep"
WORKER_MB = 450  # resident memory of one sleep worker (numpy backend, TensorFlow blocked), rounded up
PREFILL_EPOCHS = 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres (default both)")
    p.add_argument("--workers", default="1,2,4,8", help="worker counts of the scaling runs (default 1,2,4,8)")
    p.add_argument("--levels", default="100,1000,5000",
                   help="stored trials before a run; the scaling runs use the first (default 100,1000,5000)")
    p.add_argument("--level-workers", default="1",
                   help="worker counts of the runs at the other levels, e.g. 1,4 (default 1)")
    p.add_argument("--sleep", type=float, default=0.2, help="seconds each trial sleeps (default 0.2)")
    p.add_argument("--trials-per-worker", type=int, default=8,
                   help="trials each worker runs after the barrier (default 8)")
    p.add_argument("--reports", type=int, default=0,
                   help="epochs each trial reports to the pruner during its sleep (default 0)")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"], help="sampler (default tpe)")
    p.add_argument("--pg-fsync", default="on", choices=["on", "off"],
                   help="PostgreSQL fsync (default on, as a real server; search/testing/postgres.py runs with off)")
    p.add_argument("--allow-tensorflow", action="store_true",
                   help="let workers import TensorFlow (as set_random_seed does when it is installed)")
    p.add_argument("--skip-runner-gc", action="store_true",
                   help="store-only view: skip the runner's per-trial garbage collections "
                        "(gc.collect and clear_session's); labelled so in the results")
    p.add_argument("--timeout", type=float, default=900, help="seconds one run may take (default 900)")
    p.add_argument("--keep", action="store_true", help="keep the temporary stores and logs")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/store_scaling.json)")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.workers = [int(w) for w in args.workers.split(",")]
    args.levels = [int(x) for x in args.levels.split(",")]
    args.level_workers = [int(w) for w in str(args.level_workers).split(",")]
    for b in args.backends:
        if b not in ("sqlite", "postgres"):
            p.error(f"unknown backend {b!r}")
    return args


# ---------------------------------------------------------------------------------------------
# stores


class BenchPostgres:
    """search/testing/postgres.py's server with fsync as asked and room for many connections (each worker holds
    a few: the study, its heartbeat thread, its records)."""

    def __init__(self, fsync: str):
        from search.testing.postgres import PostgresServer

        class _Server(PostgresServer):
            def _pg_ctl_start(self):
                options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                           f"-c fsync={fsync} -c max_connections=400 -c shared_buffers=128MB")
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                          "-t", "60", "start")

        self.server = _Server().start()

    def template_url(self, level: int) -> str:
        name = f"tmpl_{level}"
        self.server.sql(f"CREATE DATABASE {name}")
        return self.server.url(name)

    def copy(self, template_url: str, run: str) -> str:
        template = template_url.rsplit("/", 1)[1]
        self.server.sql(f"CREATE DATABASE {run} TEMPLATE {template}")
        return self.server.url(run)

    def connections(self) -> int | None:
        try:
            import psycopg2

            conn = psycopg2.connect(host="127.0.0.1", port=self.server.port, user="search",
                                    password=self.server.password, dbname="postgres")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                    return int(cur.fetchone()[0])
            finally:
                conn.close()
        except Exception:
            return None

    def destroy(self):
        self.server.destroy()


def sqlite_copy(template_url: str, run_dir: Path) -> str:
    src = Path(template_url.removeprefix("sqlite:///"))
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    dst = run_dir / "store.db"
    shutil.copyfile(src, dst)
    return f"sqlite:///{dst}"


def prefill_trials(space, count: int, seed: int):
    """``count`` finished trials shaped like a worker's: the space's parameters (through the bridge),
    per-epoch reports and the user attributes the runner records."""
    import optuna

    from search.space.bridge import TrialHyperParameters

    mem = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    made = []
    for _ in range(count):
        trial = mem.ask()
        hp = TrialHyperParameters(trial)
        model = space.hypermodel.build(hp)
        value = float(space.hypermodel.fit(hp, model, epochs=1))
        mem.tell(trial, value)
        curve = [value * (e + 1) / PREFILL_EPOCHS for e in range(PREFILL_EPOCHS)]
        history = {"loss": [1 - v for v in curve], "accuracy": curve,
                   "val_loss": [1 - v for v in curve], "val_accuracy": curve}
        made.append(optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions, value=value,
            intermediate_values=dict(enumerate(curve)),
            user_attrs={
                "bench_prefill": True, "hp_values": dict(hp.values), "history": history,
                "metrics": {k: v[-1] for k, v in history.items()}, "best_epoch": PREFILL_EPOCHS - 1,
                "epochs": PREFILL_EPOCHS, "train_seconds": 3.2, "trial_seconds": 3.6,
                "ms_per_step": 4.1, "trainable_params": 123456, "non_trainable_params": 0,
                "worker": {"host": "prefill", "pid": 0, "slot": 0, "gpu": None}, "attempt": 1,
            }))
    return made


def make_template(url: str, level: int, args, trials=None) -> None:
    """Create the sleep study (as ``search start`` does) and add ``level`` finished trials
    (``trials``: those of :func:`prefill_trials`, made already for another store)."""
    import optuna

    from search.commands.start import prepare
    from search.options import start_options
    from search.space.loader import load_space

    prepared = prepare(start_options(
        str(SLEEP_SPACE), study=STUDY, storage=url, trials=1, epochs=max(1, args.reports),
        sampler=args.sampler, pruner="none", seed=0))
    prepared.stored.storage.engine.dispose()
    if trials is None:
        trials = prefill_trials(load_space(str(SLEEP_SPACE)), level, seed=level)
    try:
        bulk_add(url, STUDY, trials)
    except Exception as exc:  # Optuna's schema changed: the slow, public way
        common.say(f"  bulk insert failed ({type(exc).__name__}: {exc}); using study.add_trials")
        store = optuna.storages.RDBStorage(url)
        optuna.load_study(study_name=STUDY, storage=store).add_trials(trials)
        store.engine.dispose()
    store = optuna.storages.RDBStorage(url)
    stored = len(optuna.load_study(study_name=STUDY, storage=store).get_trials(deepcopy=False))
    store.engine.dispose()
    if stored != level + 1:  # the prefill and the baseline trial search queued
        raise RuntimeError(f"the template store has {stored} trials, expected {level + 1}")


def bulk_add(url: str, study_name: str, trials) -> None:
    """Insert finished trials in one transaction with SQLAlchemy Core into Optuna's tables (the
    schema is unchanged since Optuna 3.2); the same rows ``study.add_trials`` writes, minutes
    faster for thousands of trials. Numbers follow the study's existing trials."""
    import json

    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models as m
    from optuna.trial import TrialState

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    trials_t, params_t = m.TrialModel.__table__, m.TrialParamModel.__table__
    values_t, attrs_t = m.TrialValueModel.__table__, m.TrialUserAttributeModel.__table__
    inter_t = m.TrialIntermediateValueModel.__table__
    finite = m.TrialValueModel.TrialValueType.FINITE
    inter_finite = m.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
    try:
        with engine.begin() as conn:
            study_id = conn.execute(sa.select(m.StudyModel.__table__.c.study_id).where(
                m.StudyModel.__table__.c.study_name == study_name)).scalar_one()
            count = conn.execute(sa.select(sa.func.count()).select_from(trials_t).where(
                trials_t.c.study_id == study_id)).scalar_one()
            params, values, attrs, inter = [], [], [], []
            for i, t in enumerate(trials):
                trial_id = conn.execute(trials_t.insert().values(
                    number=count + i, study_id=study_id, state=TrialState.COMPLETE,
                    datetime_start=t.datetime_start, datetime_complete=t.datetime_complete,
                )).inserted_primary_key[0]
                for name, value in t.params.items():
                    dist = t.distributions[name]
                    params.append({"trial_id": trial_id, "param_name": name,
                                   "param_value": dist.to_internal_repr(value),
                                   "distribution_json": distribution_to_json(dist)})
                values.append({"trial_id": trial_id, "objective": 0, "value": t.value,
                               "value_type": finite})
                for key, value in t.user_attrs.items():
                    attrs.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
                for step, value in t.intermediate_values.items():
                    inter.append({"trial_id": trial_id, "step": step, "intermediate_value": value,
                                  "intermediate_value_type": inter_finite})
            for table, rows in ((params_t, params), (values_t, values), (attrs_t, attrs),
                                (inter_t, inter)):
                if rows:
                    conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# one run


def running_count(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM trials WHERE state = 'RUNNING'")).scalar())
    finally:
        engine.dispose()


def run_once(backend: str, url: str, workers: int, level: int, args, run_dir: Path, pg=None) -> dict:
    budget = workers * (args.trials_per_worker + 1)
    probe_dir = run_dir / "probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    barrier = run_dir / "go"
    env = common.child_env({
        "KERAS_BACKEND": "numpy",
        "BENCH_SLEEP_S": str(args.sleep),
        "BENCH_REPORTS": str(args.reports),
        "BENCH_BARRIER": str(barrier),
        "BENCH_BLOCK_TENSORFLOW": "0" if args.allow_tensorflow else "1",
        "BENCH_SKIP_GC": "1" if args.skip_runner_gc else "0",
    }, probe_dir=str(probe_dir))
    cmd = [sys.executable, "-m", "search", "start", str(SLEEP_SPACE), "--study", STUDY,
           "--storage", url, "--trials", str(level + budget), "--workers", str(workers),
           "--pruner", "none"]
    log = run_dir / "start.log"
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    released = None
    connections = None
    try:
        while proc.poll() is None and time.time() - started < args.timeout:
            if released is None:
                try:
                    ready = running_count(url) >= workers
                except Exception:
                    ready = False
                if ready:
                    if pg is not None:
                        connections = pg.connections()
                    barrier.touch()
                    released = time.time()
                    continue
            time.sleep(0.25)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"run did not finish in {args.timeout:.0f} s (log {log})")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finished = time.time()
    output = log.read_text(errors="replace")
    return analyse(backend, url, workers, level, budget, args, probe_dir, started, released,
                   finished, proc.returncode, output, connections)


def analyse(backend, url, workers, level, budget, args, probe_dir, started, released, finished,
            returncode, output, connections) -> dict:
    import optuna

    store = optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name=STUDY, storage=store)
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("bench_prefill")]
    store.engine.dispose()
    states = defaultdict(int)
    for t in trials:
        states[t.state.name] += 1
    completes = [common.epoch_seconds(t.datetime_complete) for t in trials if t.datetime_complete]
    t0 = released if released is not None else started
    t_end = max(completes) if completes else finished
    done = sum(1 for c in completes if c >= t0)
    throughput = done / (t_end - t0) if t_end > t0 else None

    probes = common.read_probes(probe_dir, role=None)
    worker_probes = [d for d in probes if d["role"] == "worker"]
    start_probes = [d for d in probes if d["role"] == "start"]
    calls = defaultdict(list)
    per_trial = defaultdict(lambda: defaultdict(float))
    for dump in worker_probes:
        for name, start, seconds, depth, trial, thread in dump["events"]:
            if thread != "MainThread" or start < t0:
                continue
            if name in ("gc_collect", "clear_session"):  # inside run_trial
                calls[name].append(seconds)
            if depth != 0:
                continue
            calls[name].append(seconds)
            if name in ("ask", "tell"):
                per_trial[(dump["pid"], trial)][name] += seconds
    ask_tell = [v["ask"] + v["tell"] for v in per_trial.values() if "ask" in v and "tell" in v]
    transient = [e for d in probes for e in d.get("transient_errors", [])]
    locked = sum(1 for e in transient if "locked" in e["message"].lower() or "busy" in e["message"].lower())
    failed_workers = "workers exited with an error" in output
    latency = {}
    for name in ("ask", "tell", "claim", "record", "reap", "set_state", "run_trial"):
        values = calls.get(name, [])
        latency[name] = {"n": len(values), "p50_ms": common.ms(common.percentile(values, 50)),
                         "p99_ms": common.ms(common.percentile(values, 99)),
                         "mean_ms": common.ms(sum(values) / len(values)) if values else None}
    for name in ("gc_collect", "clear_session"):
        values = calls.get(name, [])
        latency[name] = {"n": len(values), "p50_ms": common.ms(common.percentile(values, 50)),
                         "p99_ms": common.ms(common.percentile(values, 99))}
    latency["ask+tell"] = {"n": len(ask_tell), "p50_ms": common.ms(common.percentile(ask_tell, 50)),
                           "p99_ms": common.ms(common.percentile(ask_tell, 99))}
    return {
        "backend": backend, "workers": workers, "stored_before": level, "budget": budget,
        "sleep_s": args.sleep, "reports": args.reports, "sampler": args.sampler,
        "runner_gc": "skipped" if args.skip_runner_gc else "real",
        "returncode": returncode, "workers_failed": failed_workers,
        "startup_s": (released - started) if released else None,
        "measured_s": (t_end - t0) if released else None,
        "trials_done_after_barrier": done, "states": dict(states),
        "trials_per_s": throughput,
        "latency": latency,
        "transient_store_errors": len(transient), "lock_errors": locked,
        "transient_examples": transient[:5],
        "failed_trials": states.get("FAIL", 0),
        "worker_cpu_s": sum(d["cpu_s"] for d in worker_probes),
        "worker_max_rss_mb": max((d["max_rss_mb"] for d in worker_probes), default=None),
        "coordinator_cpu_s": sum(d["cpu_s"] for d in start_probes),
        "probes": len(worker_probes),
        "pg_client_connections": connections,
        "output_tail": common.tail(output, 6) if returncode else None,
    }


# ---------------------------------------------------------------------------------------------


def mem_available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = "numpy"  # this process only creates and reads stores
    os.environ["BENCH_SLEEP_S"] = "0"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = common.machine()
    common.say(f"store scaling: backends {', '.join(args.backends)}; workers {args.workers} at "
               f"{args.levels[0]} stored trials; levels {args.levels} with {args.level_workers} workers; "
               f"sleep {args.sleep} s, {args.trials_per_worker} trials per worker after the barrier")
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    plan = [(n, args.levels[0]) for n in args.workers]
    plan += [(n, lvl) for lvl in args.levels[1:] for n in args.level_workers]
    runs = []
    try:
        for backend in args.backends:
            pg = None
            if backend == "postgres":
                try:
                    pg = BenchPostgres(args.pg_fsync)
                except Exception as exc:
                    common.say(f"postgres: skipped, no server could be started here: {exc}")
                    runs.append({"backend": backend, "skipped": f"no PostgreSQL server: {exc}"})
                    continue
            try:
                templates = {}
                for level in sorted({lvl for _, lvl in plan}):
                    t = time.perf_counter()
                    if backend == "sqlite":
                        url = f"sqlite:///{root / f'template-{level}.db'}"
                    else:
                        url = pg.template_url(level)
                    make_template(url, level, args)
                    templates[level] = url
                    common.say(f"{backend}: store with {level} stored trials made in "
                               f"{time.perf_counter() - t:.1f} s")
                for i, (workers, level) in enumerate(plan):
                    need = workers * WORKER_MB + 1024
                    avail = mem_available_mb()
                    if avail is not None and need > avail:
                        line = (f"{backend}: {workers} workers skipped: needs about {need / 1024:.1f} GiB, "
                                f"{avail / 1024:.1f} GiB available")
                        common.say(line)
                        runs.append({"backend": backend, "workers": workers, "stored_before": level,
                                     "skipped": line})
                        continue
                    run_dir = root / f"{backend}-{workers}w-{level}"
                    run_dir.mkdir()
                    if backend == "sqlite":
                        url = sqlite_copy(templates[level], run_dir)
                    else:
                        url = pg.copy(templates[level], f"run_{i}_{workers}_{level}")
                    common.say(f"{backend}: {workers} workers, {level} stored trials ...")
                    result = run_once(backend, url, workers, level, args, run_dir, pg)
                    runs.append(result)
                    common.say(f"  {common.fmt(result['trials_per_s'], 2)} trials/s, ask p50 "
                               f"{common.fmt(result['latency']['ask']['p50_ms'])} ms, tell p50 "
                               f"{common.fmt(result['latency']['tell']['p50_ms'])} ms, start-up "
                               f"{common.fmt(result['startup_s'])} s, lock errors {result['lock_errors']}"
                               + (f", exit {result['returncode']}" if result["returncode"] else ""))
            finally:
                if pg is not None:
                    pg.destroy()
    finally:
        if args.keep:
            common.say(f"stores and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    add_efficiency(runs, args)
    info["loadavg_end"] = common.loadavg()
    payload = {"benchmark": "store_scaling", "machine": info, "settings": vars(args), "runs": runs}
    path = common.write_results("store_scaling", payload, args.out)
    print_results(runs, args)
    common.say(f"results: {path}")
    return payload


def add_efficiency(runs: list[dict], args) -> None:
    for backend in args.backends:
        scaling = [r for r in runs if r.get("backend") == backend and "skipped" not in r
                   and r["stored_before"] == args.levels[0] and r.get("trials_per_s")]
        if not scaling:
            continue
        base = min(scaling, key=lambda r: r["workers"])
        per_worker = base["trials_per_s"] / base["workers"]
        for r in scaling:
            r["efficiency"] = r["trials_per_s"] / (r["workers"] * per_worker)
            r["efficiency_vs_sleep"] = r["trials_per_s"] * args.sleep / r["workers"]


def print_results(runs: list[dict], args) -> None:
    rows = []
    for r in runs:
        if "skipped" in r:
            rows.append([r["backend"], r.get("workers", "-"), r.get("stored_before", "-"), "skipped",
                         "", "", "", "", "", "", ""])
            continue
        lat = r["latency"]
        rows.append([
            r["backend"], r["workers"], r["stored_before"], r["trials_done_after_barrier"],
            common.fmt(r["trials_per_s"], 2),
            common.fmt(100 * r["efficiency"], 0, "%") if "efficiency" in r else "",
            f"{common.fmt(lat['ask']['p50_ms'])} / {common.fmt(lat['ask']['p99_ms'])}",
            f"{common.fmt(lat['tell']['p50_ms'])} / {common.fmt(lat['tell']['p99_ms'])}",
            common.fmt(lat["ask+tell"]["p50_ms"]),
            r["lock_errors"] + (1 if r["workers_failed"] else 0),
            r["failed_trials"],
        ])
    common.print_table(
        f"Store scaling: sleep {args.sleep} s trials through the worker loop ({args.sampler}"
        + (", runner's gc skipped)" if args.skip_runner_gc else ")"),
        ["store", "workers", "stored", "trials", "trials/s", "efficiency", "ask p50/p99 ms",
         "tell p50/p99 ms", "ask+tell p50 ms", "lock errors", "failed"], rows,
        note="efficiency: trials/s over N x the 1-worker rate (first level only); latencies from "
             "the barrier on, as the workers saw them")


if __name__ == "__main__":
    main()
