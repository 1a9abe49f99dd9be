"""Optuna's gRPC storage proxy in front of our PostgreSQL store, against every client going direct.

Issue 17 asks for a path for hundreds of workers. This tries Optuna's own:
``optuna.storages.run_grpc_proxy_server`` serving ``search.storage.open_storage(url)`` (our
``ResilientRDBStorage``) in one process, and one ``optuna.storages.GrpcStorageProxy`` per
simulated client. Two parts, both on one real local PostgreSQL server
(search/testing/postgres.py's: loopback, ``fsync=off``, ``max_connections=400``):

1. **Probes** (what works through the proxy), on a study made by ``search start``'s own
   ``prepare``: Optuna's ask / suggest / report / user attribute / tell; Optuna's heartbeat
   (``record_heartbeat``, ``is_heartbeat_enabled``, ``fail_stale_trials`` on a trial whose stamp is
   stale); the product's calls that workers make (``search.storage.set_user_attrs``,
   ``open_study`` with the proxy as its store, which builds ``StudyRecords`` and
   ``WorkerRegistry`` on ``store.engine``); and whether a gRPC error counts as transient for
   ``search.storage.retrying``. Each probe records what happened, or the exact error.
2. **Load**: N simulated clients (threads spread over ``--processes`` processes, each thread with
   a store of its own), each running ``--trials-per-client`` trials of ask, three suggestions,
   ``--epochs`` reports while the trial sleeps T seconds in all, tell (random sampler). The same
   clients run twice in the same invocation, once going direct (``open_storage(url)`` each) and
   once through one proxy server process (``GrpcStorageProxy`` each), each on a fresh database.
   Measured: trials/s from the first ask to the last tell against N / T, p50 / p99 of each call,
   the server's client connections to the study's database (``pg_stat_activity``, every 0.5 s),
   lost and duplicated trials, the CPU seconds of the proxy server process. Printed side by side
   with the ratios grpc / direct.

No heartbeat and no claim in the load: the proxy has no heartbeat (part 1 shows it), and the
claim is on our own table, which the proxy cannot reach; both modes make the same calls.

    python bench/grpc_proxy.py                               # N = 50, 100; T = 5 s
    python bench/grpc_proxy.py --clients 50 --server-store cached
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

STUDY = "grpc"
SLEEP_SPACE = common.BENCH / "spaces" / "sleep.py"
CALLS = ("open", "ask", "suggest", "report", "tell")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="50,100", help="simulated clients per run (default 50,100)")
    p.add_argument("--trial-seconds", type=float, default=5.0, help="trial length T in seconds (default 5)")
    p.add_argument("--trials-per-client", type=int, default=2, help="trials each client runs (default 2)")
    p.add_argument("--epochs", type=int, default=5, help="reports per trial (default 5)")
    p.add_argument("--processes", type=int, default=4,
                   help="processes the client threads are spread over (default 4)")
    p.add_argument("--modes", default="direct,grpc", help="direct, grpc or both (default direct,grpc)")
    p.add_argument("--server-threads", type=int, default=10,
                   help="the proxy server's thread pool (default 10, run_grpc_proxy_server's own)")
    p.add_argument("--server-store", choices=("plain", "cached"), default="plain",
                   help="what the proxy serves: open_storage(url) itself (plain, the default), or wrapped "
                        "in Optuna's _CachedStorage (cached: what optuna.storages.get_storage returns)")
    p.add_argument("--server-pool", type=int, default=None,
                   help="the proxy server's engine pool: this many connections kept, none more (default: "
                        "the product's, search/storage/engine.py's POOL_SIZE + POOL_OVERFLOW)")
    p.add_argument("--no-probes", action="store_true", help="skip part 1")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/grpc_proxy.json)")
    args = p.parse_args(argv)
    args.clients = [int(n) for n in args.clients.split(",")]
    args.modes = [m.strip() for m in args.modes.split(",")]
    return args


def _quiet() -> None:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# ------------------------------------------------------------------------------ the proxy server


def _serve(url: str, port: int, threads: int, server_store: str, pool: int | None = None) -> None:
    """The proxy server process: Optuna's run_grpc_proxy_server in front of open_storage(url)."""
    from concurrent.futures import ThreadPoolExecutor

    import optuna

    _quiet()
    from search.storage import engine, open_storage

    if pool is not None:
        engine.POOL_SIZE, engine.POOL_OVERFLOW = pool, 0
    storage = open_storage(url)
    if server_store == "cached":
        storage = optuna.storages._CachedStorage(storage)
    optuna.storages.run_grpc_proxy_server(storage, host="127.0.0.1", port=port,
                                          thread_pool=ThreadPoolExecutor(max_workers=threads))


def start_proxy(url: str, threads: int, server_store: str, pool: int | None = None):
    """A proxy server process on a free port, ready to answer: (process, port)."""
    import optuna

    from search.testing.postgres import free_port

    _quiet()
    port = free_port()
    proc = mp.get_context("spawn").Process(target=_serve, args=(url, port, threads, server_store, pool),
                                           daemon=True)
    proc.start()
    optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(timeout=120)
    return proc, port


def stop_proxy(proc) -> None:
    proc.terminate()
    proc.join(10)


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ------------------------------------------------------------------------------------ part 1


def _probe(results: dict, name: str, fn) -> None:
    try:
        value = fn()
        results[name] = {"ok": True, "result": value}
    except Exception as exc:  # the error is the finding
        last = traceback.extract_tb(exc.__traceback__)[-1]
        results[name] = {"ok": False, "error": _error(exc),
                         "where": f"{last.filename.split('site-packages/')[-1]}:{last.lineno}"}
    r = results[name]
    common.say(f"  {name}: " + (f"ok {r['result']!r}" if r["ok"] else f"FAILED {r['error']}  ({r['where']})"))


def run_probes(server) -> dict:
    import grpc
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
    from optuna.trial import TrialState

    from search.storage import enable_heartbeat, is_transient, open_storage, set_user_attrs
    from search.study import open_study

    _quiet()
    url = server.url(server.create_database())
    _create_search_study(url)
    direct = open_storage(url)
    proc, port = start_proxy(url, 10, "plain")
    out: dict = {}
    try:
        proxy = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
        study = optuna.load_study(study_name=STUDY, storage=proxy)

        def ask_tell():
            trial = study.ask()
            trial.suggest_float("lr", 1e-5, 1e-1, log=True)
            trial.suggest_categorical("optimizer", ["adam", "sgd"])
            trial.suggest_int("units", 16, 256, step=16)
            trial.report(0.3, 0)
            trial.set_user_attr("worker", {"host": "h", "pid": 1})
            study.tell(trial, 0.5)
            seen = direct.get_trial(trial._trial_id)  # read back without the proxy
            return {"state": seen.state.name, "params": sorted(seen.params),
                    "reports": seen.intermediate_values,
                    "user_attrs": seen.user_attrs}

        _probe(out, "1. ask/suggest/report/set_user_attr/tell through the proxy", ask_tell)
        _probe(out, "2a. isinstance(proxy, BaseHeartbeat)", lambda: isinstance(proxy, BaseHeartbeat))
        _probe(out, "2b. is_heartbeat_enabled(proxy)", lambda: is_heartbeat_enabled(proxy))
        running = study.ask()
        _probe(out, "2c. proxy.record_heartbeat(trial_id)", lambda: proxy.record_heartbeat(running._trial_id))
        _probe(out, "2d. proxy.get_heartbeat_interval()", lambda: proxy.get_heartbeat_interval())

        def enable_then_check():
            enable_heartbeat(proxy, 1, 2, None)
            return {"is_heartbeat_enabled after enable_heartbeat": is_heartbeat_enabled(proxy)}

        _probe(out, "2e. search.storage.enable_heartbeat(proxy, 1, 2) then is_heartbeat_enabled",
               enable_then_check)

        def stale_reaped():
            # a RUNNING trial with a stale stamp, stamped by a direct store with heartbeat on
            beating = open_storage(url, heartbeat_interval=1, grace_period=2)
            beating.record_heartbeat(running._trial_id)
            time.sleep(3.5)
            optuna.storages.fail_stale_trials(study)  # the study goes through the proxy
            via_proxy = direct.get_trial(running._trial_id).state.name
            optuna.storages.fail_stale_trials(optuna.load_study(study_name=STUDY, storage=beating))
            via_direct = direct.get_trial(running._trial_id).state.name
            beating.engine.dispose()
            return {"state after fail_stale_trials through the proxy": via_proxy,
                    "state after fail_stale_trials direct": via_direct}

        _probe(out, "2f. fail_stale_trials on a stale RUNNING trial", stale_reaped)

        def grouped_attrs():
            trial = study.ask()
            set_user_attrs(trial, {"a": 1, "b": 2, "c": 3})
            study.tell(trial, 0.1)
            backend = getattr(trial.storage, "_backend", trial.storage)
            return {"stored": direct.get_trial(trial._trial_id).user_attrs,
                    "grouped (one transaction)": type(backend).__name__ == "ResilientRDBStorage",
                    "store the trial holds": type(backend).__name__}

        _probe(out, "3a. search.storage.set_user_attrs(trial, 3 attrs) through the proxy", grouped_attrs)
        _probe(out, "3b. proxy.set_trial_user_attrs (ResilientRDBStorage's grouped write)",
               lambda: proxy.set_trial_user_attrs(running._trial_id, {"a": 1}))
        _probe(out, "3c. proxy.engine (StudyRecords, WorkerRegistry, Heartbeat need it)",
               lambda: str(proxy.engine))
        _probe(out, "3d. search.study.open_study(url, name, store=proxy)",
               lambda: type(open_study(url, STUDY, store=proxy)).__name__)

        def unreachable():
            from search.testing.postgres import free_port

            gone = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=free_port())
            try:
                gone.get_study_id_from_name(STUDY)
            except grpc.RpcError as exc:
                return {"error": f"{type(exc).__name__}: {exc.code()}: {exc.details()}",
                        "search.storage.is_transient": is_transient(exc)}
            return "no error"

        _probe(out, "3e. a proxy server that is not there: the error, and is_transient", unreachable)
        study_direct = optuna.load_study(study_name=STUDY, storage=direct)
        out["trials in the probe study"] = {s.name: len(study_direct.get_trials(states=(s,)))
                                            for s in TrialState}
    finally:
        stop_proxy(proc)
        direct.engine.dispose()
    return out


def _create_search_study(url: str, budget: int = 10) -> None:
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    from search.commands.start import prepare
    from search.options import start_options

    prepare(start_options(str(SLEEP_SPACE), study=STUDY, storage=url, trials=budget, epochs=5,
                          pruner="none", sampler="random", heartbeat=10, grace=60))


# ------------------------------------------------------------------------------------ part 2


def _client(target: dict, slot: int, trials: int, trial_seconds: float, epochs: int, start_at: float,
            timings: dict, told: list, errors: list) -> None:
    import optuna

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name].append(time.perf_counter() - t0)
        return result

    try:
        if target["mode"] == "grpc":
            storage = timed("open", lambda: optuna.storages.GrpcStorageProxy(host="127.0.0.1",
                                                                             port=target["port"]))
        else:
            from search.storage import open_storage

            storage = timed("open", lambda: open_storage(target["url"]))
        study = optuna.load_study(study_name=STUDY, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=slot))
        time.sleep(max(0.0, start_at - time.time()))
        for _ in range(trials):
            trial = timed("ask", study.ask)
            timed("suggest", lambda: trial.suggest_float("lr", 1e-5, 1e-1, log=True))
            timed("suggest", lambda: trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"]))
            timed("suggest", lambda: trial.suggest_int("units", 16, 256, step=16))
            for epoch in range(epochs):
                time.sleep(trial_seconds / epochs)
                timed("report", lambda: trial.report(0.1 * epoch, epoch))
            timed("tell", lambda: study.tell(trial, 0.5))
            told.append(trial.number)
    except Exception as exc:  # counted and shown: a client that failed is a result
        errors.append(f"client {slot}: {_error(exc)}")


def _process(target: dict, slots: list[int], trials: int, trial_seconds: float, epochs: int,
             start_at: float, queue) -> None:
    _quiet()
    timings, told, errors = defaultdict(list), [], []
    threads = [threading.Thread(target=_client, daemon=True,
                                args=(target, slot, trials, trial_seconds, epochs, start_at, timings,
                                      told, errors))
               for slot in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put({"timings": dict(timings), "told": told, "errors": errors})


def run_load(server, mode: str, clients: int, args) -> dict:
    import optuna

    from search.storage import open_storage

    _quiet()
    database = server.create_database()
    url = server.url(database)
    maker = open_storage(url)
    optuna.create_study(study_name=STUDY, storage=maker, direction="minimize")
    maker.engine.dispose()
    target = {"mode": mode, "url": url}
    proxy = None
    if mode == "grpc":
        proxy, target["port"] = start_proxy(url, args.server_threads, args.server_store,
                                                    args.server_pool)
        cpu0 = _cpu_seconds(proxy.pid)
    budget = clients * args.trials_per_client
    start_at = time.time() + 15 + clients * 0.15  # every client's store open before the clock starts
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(target, list(range(i, clients, args.processes)),
                                                args.trials_per_client, args.trial_seconds, args.epochs,
                                                start_at, queue))
             for i in range(args.processes)]
    for p in procs:
        p.start()
    samples, results = [], []
    while len(results) < len(procs):
        if time.time() >= start_at:
            samples.append(common.client_connections(server, database))
        try:
            results.append(queue.get(timeout=0.5))
        except Exception:
            pass
    for p in procs:
        p.join()
    server_cpu = None
    if proxy is not None:
        cpu1 = _cpu_seconds(proxy.pid)
        server_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
        stop_proxy(proxy)
    timings, told, errors = defaultdict(list), [], []
    for r in results:
        for k, v in r["timings"].items():
            timings[k].extend(v)
        told += r["told"]
        errors += r["errors"]
    reader = open_storage(url)
    trials = optuna.load_study(study_name=STUDY, storage=reader).get_trials(deepcopy=False)
    reader.engine.dispose()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    seconds = None
    if complete:
        first = min(t.datetime_start for t in trials if t.datetime_start)
        last = max(t.datetime_complete for t in complete)
        seconds = (last - first).total_seconds()
    steady = samples[: max(1, len(samples) - 2)]
    return {
        "mode": mode, "clients": clients, "trial_seconds": args.trial_seconds, "budget": budget,
        "seconds": seconds, "trials_per_s": len(complete) / seconds if seconds else 0.0,
        "ideal_trials_per_s": clients / args.trial_seconds,
        "complete": len(complete), "lost": budget - len(complete),
        "duplicated": (len(told) - len(set(told))) + max(0, len(complete) - budget),
        "not_complete": {s: sum(1 for t in trials if t.state.name == s) for s in
                         sorted({t.state.name for t in trials} - {"COMPLETE"})},
        "errors": errors,
        "connections_mean": sum(steady) / len(steady) if steady else None,
        "connections_peak": max(samples) if samples else None,
        "proxy_server_cpu_s": server_cpu,
        "server_threads": args.server_threads if mode == "grpc" else None,
        "server_store": args.server_store if mode == "grpc" else None,
        "server_pool": (args.server_pool or "product's (1 + 4 overflow)") if mode == "grpc" else None,
        "calls": {k: {"n": len(v), "p50_ms": common.ms(common.percentile(v, 50)),
                      "p99_ms": common.ms(common.percentile(v, 99))} for k, v in timings.items()},
    }


# ------------------------------------------------------------------------------------ main


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "-"


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    _quiet()
    started = time.time()
    probes, rows = None, []
    with common.postgres() as server:
        if not args.no_probes:
            common.say("part 1: probes through the proxy")
            probes = run_probes(server)
        for clients in args.clients:
            for mode in args.modes:
                common.say(f"{clients} clients, {mode}, T = {args.trial_seconds:g} s")
                rows.append(run_load(server, mode, clients, args))
                for e in rows[-1]["errors"][:3]:
                    common.say(f"  {e}")
    table = []
    for r in rows:
        def cell(name, calls=r["calls"]):
            return common.p50_p99(calls, name)

        conns = (f"{r['connections_mean']:.1f} / {r['connections_peak']}"
                 if r["connections_mean"] is not None else "-")
        table.append([r["clients"], r["mode"], f"{r['trials_per_s']:.2f} / {r['ideal_trials_per_s']:.2f}",
                      cell("ask"), cell("suggest"), cell("report"), cell("tell"), conns, r["lost"],
                      r["duplicated"], len(r["errors"]),
                      "-" if r["proxy_server_cpu_s"] is None else f"{r['proxy_server_cpu_s']:.1f}"])
    common.print_table(
        "Optuna's gRPC proxy against direct: simulated clients on one PostgreSQL server "
        f"(T = {args.trial_seconds:g} s)",
        ["clients", "mode", "trials/s (ideal)", "ask", "suggest", "report", "tell", "conns mean/peak",
         "lost", "dup", "errors", "proxy CPU s"],
        table, note="ask .. tell: p50 / p99 ms per call; "
                    "conns: the server's client connections to the study's database")
    ratios = []
    for clients in args.clients:
        by = {r["mode"]: r for r in rows if r["clients"] == clients}
        if {"direct", "grpc"} <= set(by):
            g, d = by["grpc"], by["direct"]
            ratios.append([clients, _ratio(g["trials_per_s"], d["trials_per_s"])]
                          + [" / ".join(_ratio(g["calls"].get(k, {}).get(q), d["calls"].get(k, {}).get(q))
                                        for q in ("p50_ms", "p99_ms"))
                             for k in ("ask", "suggest", "report", "tell")]
                          + [_ratio(g["connections_mean"], d["connections_mean"]),
                             _ratio(g["connections_peak"], d["connections_peak"])])
    if ratios:
        common.print_table("grpc / direct", ["clients", "trials/s", "ask p50/p99", "suggest", "report",
                                             "tell",
                                             "conns mean", "conns peak"], ratios)
    payload = {"args": vars(args), "probes": probes, "rows": rows, "machine": common.machine(),
               "seconds": time.time() - started}
    path = common.write_results("grpc_proxy", payload, args.out)
    common.say(f"results: {path}")


if __name__ == "__main__":
    main()
