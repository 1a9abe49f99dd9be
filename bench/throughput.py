"""Trial throughput per device: trials per hour with K worker slots, and ms per training step.

1. ``search start spaces/cnn.py --per-gpu K`` for K = 1, 2, 4 (K workers on each GPU; on a machine
   without a GPU, K CPU workers): trials per hour, end to end (the command's wall time, start-up
   included) and over the trials' own window (first trial started to last one completed). The
   architecture is fixed small by ``--set`` (one conv block of 16 filters, 3x3, global pooling, 64
   dense units, batch 32) so every trial costs about the same; the optimizer, learning rate,
   dropout, activation, batch norm and weight decay are still searched.
2. Only where a GPU is visible: ms per training step of a simple CNN and of VGG16 (random weights),
   32x32x3 input, batch 128, through ``search start`` (the trial's ``ms_per_step``) and through
   plain Keras in a fresh process timed the same way (each epoch's steps, from the epoch's start to
   its last step; also without the first epoch, which traces the graph). The data is a synthetic
   .npz of random 32x32 images (nothing is downloaded). Without a GPU this part prints one line
   and is skipped (``--gpu-part-on-cpu`` runs it on the CPU, a check of the code, not a figure).

    python bench/throughput.py                         # K=1,2,4, 4 trials per slot, 3 epochs
    python bench/throughput.py --trials-per-slot 10 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

CNN = common.REPO / "spaces" / "cnn.py"
STEP_SPACE = common.BENCH / "spaces" / "step_time.py"
SMALL_CNN = ["conv_blocks=1", "convs_per_block=1", "filters=16", "kernel_size=3",
             "pooling=global_avg", "dense_units=64", "batch_size=32"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slots", default="1,2,4", help="K values (default 1,2,4)")
    p.add_argument("--trials-per-slot", type=int, default=4, help="trials per worker slot (default 4)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    p.add_argument("--data", default="digits")
    p.add_argument("--step-epochs", type=int, default=3, help="epochs of the ms/step runs (default 3)")
    p.add_argument("--step-images", type=int, default=10_000,
                   help="synthetic training images of the ms/step runs (default 10000)")
    p.add_argument("--gpu-part-on-cpu", action="store_true",
                   help="run the ms/step part without a GPU (a check of the code, not a figure)")
    p.add_argument("--skip-slots", action="store_true", help="only the ms/step part")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/throughput.json)")
    p.add_argument("--step-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.slots = [int(k) for k in args.slots.split(",")]
    return args


# ---------------------------------------------------------------------------------------------
# 1. trials per hour with K slots


def run_slots(args, work: Path) -> list[dict]:
    import optuna

    from search.execution.devices import visible_gpus

    gpus = visible_gpus()
    rows = []
    for k in args.slots:
        store = f"sqlite:///{work / f'slots-{k}.db'}"
        trials = k * args.trials_per_slot
        cmd = ["start", str(CNN), "--study", f"slots-{k}", "--storage", store, "--trials", str(trials),
               "--epochs", str(args.epochs), "--per-gpu", str(k), "--pruner", "none", "--seed", "0",
               "--data", args.data]
        for item in SMALL_CNN:
            cmd += ["--set", item]
        common.say(f"K={k}: search start --per-gpu {k} --trials {trials} ...")
        rc, wall, output = common.run_search(cmd, common.child_env(), log_path=work / f"slots-{k}.log")
        if rc != 0:
            raise RuntimeError(f"search start --per-gpu {k} failed (exit {rc}):\n{common.tail(output)}")
        study = optuna.load_study(study_name=f"slots-{k}", storage=store)
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        starts = [common.epoch_seconds(t.datetime_start) for t in done]
        ends = [common.epoch_seconds(t.datetime_complete) for t in done]
        window = max(ends) - min(starts)
        row = {
            "slots": k, "workers": k * max(1, len(gpus)), "device": f"{len(gpus)} GPU" if gpus else "CPU",
            "trials": len(done), "wall_s": wall, "window_s": window,
            "trials_per_hour_end_to_end": 3600 * len(done) / wall,
            "trials_per_hour_window": 3600 * len(done) / window,
            "median_trial_seconds": common.median([t.user_attrs.get("trial_seconds") for t in done]),
            "median_ms_per_step": common.median([t.user_attrs.get("ms_per_step") for t in done]),
            "states": {s: sum(1 for t in done if t.state.name == s) for s in {t.state.name for t in done}},
        }
        rows.append(row)
        common.say(f"  {row['trials_per_hour_window']:.0f} trials/hour over the trials' window, "
                   f"{row['trials_per_hour_end_to_end']:.0f} end to end ({wall:.0f} s)")
    base = rows[0]["trials_per_hour_window"] if rows else None
    for row in rows:
        row["speedup_vs_first"] = row["trials_per_hour_window"] / base if base else None
    return rows


# ---------------------------------------------------------------------------------------------
# 2. ms per step, search vs plain Keras


def step_child(job_path: str) -> None:
    """Plain Keras: build the model of the step-time space and fit it, timed by the runner's own
    step timer (search.execution.callbacks.StepTimer, what TrialCallback extends)."""
    job = json.loads(Path(job_path).read_text())
    import keras
    import keras_tuner as kt

    from search import _datasets
    from search.execution.callbacks import (
        StepTimer,  # the runner's timer, with no Optuna trial around it
    )
    from search.space.loader import load_space

    space = load_space(job["space"])
    dataset = _datasets.load(job["data"], 0)
    keras.utils.set_random_seed(0)
    _datasets.activate(dataset)
    hp = kt.HyperParameters()
    hp.values = {"model": job["model"]}
    model = space.hypermodel.build(hp)
    timer = StepTimer()
    space.hypermodel.fit(hp, model, dataset.x_train, dataset.y_train,
                         validation_data=(dataset.x_val, dataset.y_val), epochs=job["epochs"],
                         callbacks=[timer], verbose=0)
    rest = timer.epochs[1:]
    Path(job["result"]).write_text(json.dumps({
        "ms_per_step": timer.ms_per_step,
        "ms_per_step_after_first_epoch": (1000 * sum(s for s, _, _ in rest) / sum(n for _, n, _ in rest))
        if rest else None,
        "epochs": timer.epochs,
    }))


def synthetic_npz(path: Path, images: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    n_test = max(100, images // 5)
    np.savez(path, x_train=rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, images), x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, n_test))


def run_steps(args, work: Path) -> list[dict]:
    import optuna

    npz = work / "synthetic32.npz"
    synthetic_npz(npz, args.step_images)
    rows = []
    for model in ("simple_cnn", "vgg16"):
        job = {"space": str(STEP_SPACE), "data": str(npz), "model": model, "epochs": args.step_epochs,
               "result": str(work / f"plain-{model}.json")}
        job_path = work / f"plain-{model}-job.json"
        job_path.write_text(json.dumps(job))
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--step-child", str(job_path)],
                              cwd=work, env=common.child_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"plain {model} failed:\n{common.tail(proc.stdout + proc.stderr)}")
        plain = json.loads(Path(job["result"]).read_text())
        store = f"sqlite:///{work / f'steps-{model}.db'}"
        rc, wall, output = common.run_search(
            ["start", str(STEP_SPACE), "--study", f"steps-{model}", "--storage", store, "--trials", "1",
             "--epochs", str(args.step_epochs), "--workers", "1", "--pruner", "none",
             "--data", str(npz), "--set", f"model={model}"], common.child_env(),
            log_path=work / f"steps-{model}.log")
        if rc != 0:
            raise RuntimeError(f"search start ({model}) failed (exit {rc}):\n{common.tail(output)}")
        trial = optuna.load_study(study_name=f"steps-{model}", storage=store).get_trials(deepcopy=False)[0]
        ours = trial.user_attrs.get("ms_per_step")
        rows.append({"model": model, "batch_size": 128, "input": "32x32x3", "epochs": args.step_epochs,
                     "plain_ms_per_step": plain["ms_per_step"],
                     "plain_ms_per_step_after_first_epoch": plain["ms_per_step_after_first_epoch"],
                     "search_ms_per_step": ours,
                     "ratio": ours / plain["ms_per_step"] if ours else None,
                     "trainable_params": trial.user_attrs.get("trainable_params")})
        common.say(f"{model}: plain {plain['ms_per_step']:.1f} ms/step, search {common.fmt(ours)} ms/step")
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.step_child:
        step_child(args.step_child)
        return {}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from search.execution.devices import visible_gpus

    info = common.machine()
    gpus = visible_gpus()
    info["gpus"] = gpus
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    payload = {"benchmark": "throughput", "machine": info, "settings": {k: v for k, v in vars(args).items() if k != "step_child"}}
    try:
        if not args.skip_slots:
            payload["slots"] = run_slots(args, work)
        if gpus or args.gpu_part_on_cpu:
            payload["steps"] = run_steps(args, work)
            payload["steps_device"] = "GPU " + ",".join(gpus) if gpus else "CPU (--gpu-part-on-cpu: not a GPU figure)"
        else:
            payload["steps"] = None
            payload["steps_skipped"] = "no GPU on this machine (nvidia-smi lists none): ms/step part skipped"
            common.say("GPU part skipped: no GPU on this machine (nvidia-smi lists none)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["loadavg_end"] = common.loadavg()
    path = common.write_results("throughput", payload, args.out)
    print_results(payload, args)
    common.say(f"results: {path}")
    return payload


def print_results(payload: dict, args) -> None:
    if payload.get("slots"):
        rows = [[r["slots"], r["workers"], r["device"], r["trials"], common.fmt(r["trials_per_hour_window"], 0),
                 common.fmt(r["speedup_vs_first"], 2), common.fmt(r["trials_per_hour_end_to_end"], 0),
                 common.fmt(r["median_trial_seconds"], 2), common.fmt(r["median_ms_per_step"], 1)]
                for r in payload["slots"]]
        common.print_table(
            f"Trials per hour with K slots (small cnn on {args.data}, {args.epochs} epochs per trial)",
            ["K", "workers", "device", "trials", "trials/h (window)", "speed-up", "trials/h (end to end)",
             "median trial s", "median ms/step"], rows,
            note="window: first trial started to last completed; end to end: the search start command, "
                 "worker start-up included")
    if payload.get("steps"):
        rows = [[r["model"], common.fmt(r["plain_ms_per_step"], 1),
                 common.fmt(r["plain_ms_per_step_after_first_epoch"], 1),
                 common.fmt(r["search_ms_per_step"], 1), common.fmt(r["ratio"], 3)] for r in payload["steps"]]
        common.print_table(f"ms per step, 32x32x3, batch 128 ({payload['steps_device']})",
                           ["model", "plain Keras", "plain, after epoch 1", "search", "search/plain"], rows)


if __name__ == "__main__":
    main()
