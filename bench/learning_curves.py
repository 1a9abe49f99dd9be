"""Record the learning-curve table: every configuration of two grids trained for real on digits.

The grids (``bench/curves.py``): the cnn space (``spaces/cnn.py``) restricted to 432 configurations
(conv blocks 1-3, filters 16/32/64, batch norm, conv dropout 0/0.3, Adam/SGD, learning rate
1e-3/3e-3/1e-2, batch 32/128) and the mlp space (``bench/spaces/mlp.py``) to 624 (relu/tanh, 1-3
layers of 32/64/256 units each, Adam/SGD, learning rate 1e-3/1e-2, batch 32/128); every other
hyperparameter at the space's default. Each configuration is trained for E = 27 epochs (three
Hyperband rounds of factor 3) with seeds 0 and 1 (the seed of the data split,
``search._datasets.load("digits", seed)``, and of Keras' weights, ``keras.utils.set_random_seed``),
the way the service's runner trains a trial (``clear_session``, the space's own build and fit, the
validation split as validation data, ``verbose=0``), and every epoch's loss, val_loss,
val_accuracy, wall seconds and CPU seconds (``time.process_time``: with one thread, the compute
the epoch cost whatever else runs on the machine) is stored.

Sizing and backend (``--measure 4``: 4 configurations per space, 27 epochs, one thread, on the
2-core machine of bench/README.md shared with other work). TensorFlow: the first epoch 1.7-4.3 CPU s
(graph tracing), later ones 0.25-0.47; a whole configuration 9.3 CPU s (mlp) and 14.5 (cnn) on
average. JAX: later epochs 0.03-0.07 CPU s, but compiling costs 5-7 CPU s a model (and runs on
more than the one thread asked for), so a whole configuration costs as much (mlp 10.2 CPU s).
TensorFlow is as cheap per configuration and keeps to one thread: the table is TensorFlow's. The
grids were sized from those figures: 2 seeds x (624 x 9.3 + 432 x 14.5) CPU s = 6.3 CPU hours,
within the 10 hours of one core they were given (bench/README.md, section 5).

Resumable: the table (``bench/results/learning_curves.jsonl.gz``) is append-only, one record per
(space, configuration, seed); a run skips what is recorded already (also a table committed by an
earlier run on another machine) and adds a header record with its own commit and machine.
Progress (configurations done / total, rate, ETA) is rewritten to ``TABLE.progress`` after every
configuration, and shown on one live line when stderr is a terminal.

    nice -n 19 python bench/learning_curves.py                  # the whole table (hours; resumable)
    python bench/learning_curves.py --limit 4 --out /tmp/t.jsonl.gz   # a few configurations
    python bench/learning_curves.py --measure 3                 # time 3 configurations per space, no table
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import curves  # noqa: E402

ORDER = ("mlp", "cnn")  # the cheaper space first: a partial table holds whole grids sooner


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default=",".join(ORDER), help="cnn, mlp or both (default mlp,cnn)")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (default 2)")
    p.add_argument("--epochs", type=int, default=27, help="E: epochs per configuration (default 27)")
    p.add_argument("--out", default=str(curves.TABLE), help=f"the table (default {curves.TABLE})")
    p.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"),
                   choices=("tensorflow", "jax"), help="Keras backend (default $KERAS_BACKEND or tensorflow)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for training (default 1)")
    p.add_argument("--limit", type=int, default=None, help="record at most N configurations, then stop")
    p.add_argument("--measure", type=int, default=None, metavar="N",
                   help="train N configurations of each space (spread over its grid), print their "
                        "cost, store nothing")
    args = p.parse_args(argv)
    args.spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    for s in args.spaces:
        if s not in curves.GRIDS:
            p.error(f"unknown space {s!r} (known: {', '.join(curves.GRIDS)})")
    if args.epochs < 1 or args.seeds < 1 or args.threads < 1:
        p.error("--epochs, --seeds and --threads must be at least 1")
    return args


def set_threads(backend: str, threads: int) -> None:
    """Choose the backend and its thread count before Keras is imported."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                 "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()


class Recorder:
    """Trains one configuration the way the service's runner trains a trial, recording each epoch."""

    def __init__(self, epochs: int):
        import keras

        self.keras = keras
        self.epochs = epochs
        self.spaces = {}

    def space(self, grid: curves.Grid):
        from search.space.loader import load_space

        if grid.space not in self.spaces:
            space = load_space(str(grid.path))
            check_defaults(grid, space)
            self.spaces[grid.space] = space
        return self.spaces[grid.space]

    def train(self, grid: curves.Grid, config: dict, seed: int) -> dict:
        import keras_tuner as kt

        from search import _datasets

        keras = self.keras
        space = self.space(grid)
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        dataset = _datasets.load("digits", seed)
        _datasets.activate(dataset)
        hp = kt.HyperParameters()
        hp.values.update(config)
        started = time.perf_counter()
        model = space.hypermodel.build(hp)
        built = time.perf_counter()
        log = {name: [] for name in curves.METRICS}

        class EpochLog(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.wall, self.cpu = time.perf_counter(), time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                log["seconds"].append(round(time.perf_counter() - self.wall, 4))
                log["cpu_seconds"].append(round(time.process_time() - self.cpu, 4))
                logs = logs or {}
                for name in ("loss", "val_loss", "val_accuracy"):
                    value = logs.get(name)
                    log[name].append(None if value is None else float(value))
                loss = logs.get("loss")
                if loss is None or loss != loss or abs(loss) == float("inf"):
                    self.model.stop_training = True  # as the service's trial callback does

        space.hypermodel.fit(hp, model, dataset.x_train, dataset.y_train,
                             validation_data=(dataset.x_val, dataset.y_val), epochs=self.epochs,
                             callbacks=[EpochLog()], verbose=0)
        declared = {p.name for p in hp.space}
        wrong = {k: v for k, v in config.items() if k not in declared or hp.values.get(k) != v}
        if wrong:  # a grid value the space did not declare or take: the grid does not match the space
            raise SystemExit(f"{grid.space}: the space did not use the grid's values {wrong}")
        for name in ("loss", "val_loss"):
            log[name] = [None if v is None else float(f"{v:.6g}") for v in curves.finite(log[name])]
        log["val_accuracy"] = [None if v is None else round(v, 6) for v in curves.finite(log["val_accuracy"])]
        params = sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights)
        return {"kind": "curve", "space": grid.space, "seed": seed, "config": config, "epochs": log,
                "build_seconds": round(built - started, 4), "params": params}


def check_defaults(grid: curves.Grid, space) -> None:
    """The grid's defaults are the space's (the replay's default-first trial is the real one): build
    the space with no values (and, for a conditional parameter, with its parent enabling it)."""
    import keras_tuner as kt

    from search import _datasets

    dataset = _datasets.load("digits", 0)
    _datasets.activate(dataset)
    for p in grid.params:
        hp = kt.HyperParameters()
        if p.when is not None:
            hp.values[p.when[0]] = p.when[1][-1]
        model = space.hypermodel.build(hp)  # fit declares the batch size: fit no epoch
        space.hypermodel.fit(hp, model, dataset.x_train[:8], dataset.y_train[:8], epochs=0, verbose=0)
        if hp.values.get(p.name) != p.default or p.default not in p.values:
            raise SystemExit(f"{grid.space}: the grid's default of {p.name} is {p.default!r}, the "
                             f"space's {hp.values.get(p.name)!r} (or it is not among the grid's values)")


def work_list(args, table: curves.Table) -> tuple[list, int]:
    """The (grid, config, seed) still to record, in recording order, and the total."""
    todo, total = [], 0
    for seed in range(args.seeds):
        for name in [s for s in ORDER if s in args.spaces]:
            grid = curves.GRIDS[name]
            for config in grid.configs():
                total += 1
                if table.get(name, seed, config) is None:
                    todo.append((grid, config, seed))
    return todo, total


class Progress:
    """Configurations done / total, rate and ETA: to ``path`` after each one, and a live line."""

    def __init__(self, path: Path, total: int, done: int):
        self.path, self.total, self.done_before = path, total, done
        self.done, self.started, self.cpu = done, time.time(), 0.0
        self.live = sys.stderr.isatty()

    def update(self, record: dict | None, last: str = "") -> None:
        if record is not None:
            self.done += 1
            self.cpu += sum(record["epochs"]["cpu_seconds"])
        new = self.done - self.done_before
        elapsed = time.time() - self.started
        rate = new / elapsed * 3600 if elapsed > 0 and new else 0.0
        left = self.total - self.done
        eta = left / rate * 3600 if rate else None
        cpu_per = self.cpu / new if new else None
        line = (f"{self.done}/{self.total} configurations ({100 * self.done / max(1, self.total):.1f}%), "
                f"{new} this run in {elapsed / 60:.1f} min, {rate:.0f}/h, "
                f"ETA {_duration(eta)}"
                + (f", {cpu_per:.1f} CPU s per configuration" if cpu_per else "")
                + (f"; last: {last}" if last else ""))
        self.path.write_text(line + "\n")
        if self.live:
            sys.stderr.write("\r\033[K" + line[: os.get_terminal_size().columns - 1])
            sys.stderr.flush()

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\n")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measure(args) -> None:
    """Train N configurations per space, spread evenly over its grid; print their cost."""
    recorder = Recorder(args.epochs)
    for name in [s for s in ORDER if s in args.spaces]:
        grid = curves.GRIDS[name]
        configs = grid.configs()
        step = max(1, len(configs) // args.measure)
        totals = []
        for config in configs[::step][: args.measure]:
            t0, c0 = time.perf_counter(), time.process_time()
            record = recorder.train(grid, config, 0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            totals.append(cpu)
            e = record["epochs"]
            print(f"{args.backend} {name} {curves.config_key(config)}: {len(e['seconds'])} epochs, "
                  f"first {e['cpu_seconds'][0]:.2f} CPU s, then {sum(e['cpu_seconds'][1:]) / max(1, len(e['cpu_seconds']) - 1):.3f}"
                  f" CPU s/epoch; whole {cpu:.1f} CPU s ({wall:.1f} s wall), best val_accuracy "
                  f"{max(v for v in e['val_accuracy'] if v is not None):.4f}", flush=True)
        mean = sum(totals) / len(totals)
        print(f"{args.backend} {name}: mean {mean:.1f} CPU s per configuration; the grid "
              f"({len(configs)} x {args.seeds} seeds) {mean * len(configs) * args.seeds / 3600:.1f} CPU h",
              flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.backend, args.threads)
    if args.measure:
        measure(args)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = curves.repair(out)
    table = curves.Table.load(out)
    todo, total = work_list(args, table)
    progress = Progress(Path(str(out) + ".progress"), total, total - len(todo))
    print(f"learning curves: {out} holds {kept} records; {len(todo)} of {total} configurations to "
          f"record ({args.backend}, {args.threads} thread(s), E={args.epochs})", flush=True)
    if args.limit is not None:
        todo = todo[: args.limit]
    if not todo:
        progress.update(None)
        return 0
    sys.path.insert(0, str(curves.REPO))
    from bench import common

    headers = [r["id"] for r in curves.read_records(out)[0] if r.get("kind") == "header"]
    header_id = max(headers, default=-1) + 1
    curves.append_record(out, {"kind": "header", "id": header_id, "machine": common.machine(),
                               "settings": {"epochs": args.epochs, "seeds": args.seeds,
                                            "backend": args.backend, "threads": args.threads,
                                            "data": "digits", "spaces": args.spaces,
                                            "nice": os.nice(0)}})
    recorder = Recorder(args.epochs)
    try:
        for grid, config, seed in todo:
            record = recorder.train(grid, config, seed)
            record["header"] = header_id
            curves.append_record(out, record)
            best = max((v for v in record["epochs"]["val_accuracy"] if v is not None), default=None)
            progress.update(record, f"{grid.space} seed {seed} best {best}")
    except KeyboardInterrupt:
        progress.close()
        print("interrupted: what was recorded is kept; run again to resume", file=sys.stderr)
        return 130
    progress.close()
    print(progress.path.read_text().strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
