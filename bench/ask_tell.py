"""Ask+tell at 1,000 stored trials: this service's store against plain Optuna, on a local
PostgreSQL server and on SQLite, side by side in one run.

Four stores, each a copy of one study holding L finished trials shaped like a worker's (the sleep
space's five parameters, ten per-epoch reports, the user attributes a worker records; made as
``bench/store_scaling.py`` makes them):

- ``optuna  postgres``: Optuna's ``RDBStorage(url)``, its own engine settings;
- ``search  postgres``: ``search.storage.open_storage(url)`` (``ResilientRDBStorage``: a pool with
  pre-ping, every call retried while the server is unreachable, its own ``get_trial`` and
  ``set_trial_user_attrs``);
- ``search  sqlite`` and ``optuna  sqlite``: the same on a SQLite file (ours: WAL, busy timeout,
  ``BEGIN IMMEDIATE``).

Each trial runs the store calls of the worker loop (search/execution/worker.py and runner.py),
nothing else: ``study.ask()``, the heartbeat, the read of the trial's attempt, the worker's two
attributes, the space's five ``suggest_*`` through the bridge (which is where TPE samples), the
runner's dozen attributes, ``study.tell``. Ours writes the attributes as the worker does
(``search.storage.set_user_attrs``: one transaction a group); plain Optuna with
``trial.set_user_attr``, one each. Both use the worker's sampler (Optuna's default TPE, seeded).
The four take turns trial by trial, so a busy moment of the machine falls on all of them alike.

Measured per trial: ``study.ask`` and ``study.tell`` (their sum is "ask+tell", what
``bench/store_scaling.py``'s probe reports and the target is about), the whole trial's store work
(ask to tell), and the SQL statements and transactions the store ran for it (engine events).

    python bench/ask_tell.py                    # 1,000 stored trials, 60 trials each (about a minute)
    python bench/ask_tell.py --stored 5000 --trials 100
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

STUDY = "sleep"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stored", type=int, default=1000, help="finished trials in the study before (default 1000)")
    p.add_argument("--trials", type=int, default=60, help="measured trials per store (default 60)")
    p.add_argument("--warmup", type=int, default=5, help="trials per store before measuring (default 5)")
    p.add_argument("--pg-fsync", default="on", choices=["on", "off"],
                   help="PostgreSQL fsync (default on, as a real server)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/ask_tell.json)")
    return p.parse_args(argv)


class Counter:
    """SQL statements and transactions an engine runs (SQLite's BEGIN IMMEDIATE not counted as a
    statement: it is the start of the transaction, as PostgreSQL's implicit BEGIN)."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.statements = self.transactions = 0

        def statement(conn, cursor, text, *args):
            if not text.startswith("BEGIN"):
                self.statements += 1

        def begin(conn):
            self.transactions += 1

        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "begin", begin)

    def read(self) -> tuple[int, int]:
        return self.statements, self.transactions


class Contender:
    """One store and the study on it, running the worker loop's store calls a trial at a time."""

    def __init__(self, name: str, backend: str, url: str, ours: bool, space, seed: int):
        import optuna

        from search.storage import open_storage

        self.name, self.backend, self.ours, self.space = name, backend, ours, space
        self.store = open_storage(url) if ours else optuna.storages.RDBStorage(url)
        self.counter = Counter(self.store.engine)
        self.study = optuna.load_study(study_name=STUDY, storage=self.store,
                                       sampler=optuna.samplers.TPESampler(seed=seed))
        self.samples: list[dict] = []

    def _set_attrs(self, trial, attrs: dict) -> None:
        if self.ours:
            from search.storage import set_user_attrs

            set_user_attrs(trial, attrs)
        else:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)

    def one_trial(self, keep: bool) -> None:
        from search import trial_attrs
        from search.space.bridge import TrialHyperParameters

        s0, t0 = self.counter.read()
        start = time.perf_counter()
        cpu = time.process_time()
        trial = self.study.ask()
        asked = time.perf_counter()
        s_asked, t_asked = self.counter.read()
        self.store.record_heartbeat(trial._trial_id)  # Heartbeat.beat(), at once after ask
        frozen = self.store.get_trial(trial._trial_id)
        self._set_attrs(trial, {trial_attrs.WORKER: {"host": socket.gethostname(), "pid": os.getpid(),
                                                     "slot": 0, "gpu": None},
                                trial_attrs.ATTEMPT: trial_attrs.attempt(frozen)})
        hp = TrialHyperParameters(trial)
        self.space.hypermodel.build(hp)  # the five suggestions
        value = 0.5 + 0.01 * (trial.number % 7)
        history = {"loss": [1 - value], "val_loss": [1 - value], "accuracy": [value],
                   "val_accuracy": [value]}
        self._set_attrs(trial, {  # what runner.run_trial records of a finished trial
            trial_attrs.TRAINABLE_PARAMS: 0, trial_attrs.NON_TRAINABLE_PARAMS: 0,
            trial_attrs.METRICS: {k: v[-1] for k, v in history.items()},
            trial_attrs.SEED: trial.number, trial_attrs.HP_VALUES: dict(hp.values),
            trial_attrs.HISTORY: history, trial_attrs.BEST_EPOCH: 0, trial_attrs.EPOCHS: 1,
            trial_attrs.TRAIN_SECONDS: 0.2, trial_attrs.TRIAL_SECONDS: 0.21,
            trial_attrs.MS_PER_STEP: 3.1, trial_attrs.EPOCH_TIMES: [[0.2, 10]],
        })
        s_telling, t_telling = self.counter.read()
        telling = time.perf_counter()
        self.study.tell(trial, value)
        end = time.perf_counter()
        s1, t1 = self.counter.read()
        if keep:
            self.samples.append({"ask": asked - start, "tell": end - telling,
                                 "ask+tell": (asked - start) + (end - telling), "trial": end - start,
                                 "cpu": time.process_time() - cpu,
                                 "statements": s1 - s0, "transactions": t1 - t0,
                                 "ask+tell statements": (s_asked - s0) + (s1 - s_telling),
                                 "ask+tell transactions": (t_asked - t0) + (t1 - t_telling)})

    def close(self) -> None:
        self.store.engine.dispose()


def summary(c: Contender) -> dict:
    out = {"name": c.name, "backend": c.backend, "ours": c.ours, "n": len(c.samples)}
    for key in ("ask", "tell", "ask+tell", "trial", "cpu"):
        values = [s[key] for s in c.samples]
        out[key] = {"p50_ms": common.ms(common.percentile(values, 50)),
                    "p99_ms": common.ms(common.percentile(values, 99))}
    for key in ("statements", "transactions", "ask+tell statements", "ask+tell transactions"):
        out[key] = common.median([s[key] for s in c.samples])
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = "numpy"  # the sleep space's build() needs Keras, nothing trains
    os.environ["BENCH_SLEEP_S"] = "0"  # the stored trials are made by its fit(): no sleeping
    import optuna

    from bench.store_scaling import SLEEP_SPACE, BenchPostgres, make_template, prefill_trials, sqlite_copy
    from search.space.loader import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = common.machine()
    started = time.time()
    root = Path(tempfile.mkdtemp(prefix="bench-ask-tell-"))
    template_args = types.SimpleNamespace(sampler="tpe", reports=0)
    space = load_space(str(SLEEP_SPACE))
    contenders: list[Contender] = []
    pg = None
    try:
        stored = prefill_trials(space, args.stored, seed=args.stored)
        sqlite_template = f"sqlite:///{root / 'template.db'}"
        make_template(sqlite_template, args.stored, template_args, stored)
        urls = {}
        for who in ("search", "optuna"):
            (root / who).mkdir()
            urls[(who, "sqlite")] = sqlite_copy(sqlite_template, root / who)
        try:
            pg = BenchPostgres(args.pg_fsync)
            pg_template = pg.template_url(args.stored)
            make_template(pg_template, args.stored, template_args, stored)
            for who in ("search", "optuna"):
                urls[(who, "postgres")] = pg.copy(pg_template, f"{who}_store")
        except Exception as exc:
            common.say(f"postgres: skipped, no server could be started here: {exc}")
        for (who, backend), url in sorted(urls.items(), key=lambda kv: (kv[0][1] != "postgres", kv[0])):
            contenders.append(Contender(f"{who:7s} {backend}", backend, url, who == "search", space,
                                        seed=1))
        common.say(f"ask+tell: {len(contenders)} stores with {args.stored} stored trials; "
                   f"{args.warmup} warm-up and {args.trials} measured trials each, taking turns")
        for i in range(args.warmup + args.trials):
            turn = contenders[i % len(contenders):] + contenders[:i % len(contenders)]
            for c in turn:
                c.one_trial(keep=i >= args.warmup)
    finally:
        for c in contenders:
            c.close()
        if pg is not None:
            pg.destroy()
    results = [summary(c) for c in contenders]
    info["loadavg_end"] = common.loadavg()
    payload = {"machine": info, "args": vars(args), "seconds": round(time.time() - started, 1),
               "results": results}
    path = common.write_results("ask_tell", payload, args.out)
    rows = [[r["name"], r["n"], f"{common.fmt(r['ask']['p50_ms'])} / {common.fmt(r['ask']['p99_ms'])}",
             f"{common.fmt(r['tell']['p50_ms'])} / {common.fmt(r['tell']['p99_ms'])}",
             f"{common.fmt(r['ask+tell']['p50_ms'])} / {common.fmt(r['ask+tell']['p99_ms'])}",
             f"{common.fmt(r['trial']['p50_ms'])} / {common.fmt(r['trial']['p99_ms'])}",
             common.fmt(r["cpu"]["p50_ms"]),
             f"{common.fmt(r['ask+tell statements'], 0)} / {common.fmt(r['ask+tell transactions'], 0)}",
             f"{common.fmt(r['statements'], 0)} / {common.fmt(r['transactions'], 0)}"] for r in results]
    common.print_table(
        f"Ask+tell at {args.stored} stored trials (TPE, the worker loop's store calls; PostgreSQL "
        f"fsync={args.pg_fsync}; load {info['loadavg_1_5_15']} -> {info['loadavg_end']})",
        ["store", "trials", "ask p50/p99 ms", "tell p50/p99 ms", "ask+tell p50/p99 ms",
         "trial's store work p50/p99 ms", "its CPU p50 ms", "ask+tell statements / transactions",
         "trial's statements / transactions"], rows,
        note="trial's store work: ask to tell (heartbeat, attempt read, 14 attributes, 5 suggestions "
             "with TPE's sampling), wall and this process's CPU; statements and transactions: "
             "per trial, median")
    common.say(f"results: {path} ({payload['seconds']:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
