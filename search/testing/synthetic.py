"""Synthetic studies with a known structure, for tests, demos and benchmarks (no training).

The objective (``val_accuracy``, maximized) is built so that the answer is known:

- ``learning_rate`` (log, 1e-5..1e-1) matters: best in 1e-4..1e-3, worse either side, and 1e-2 and
  above diverges (a failed trial with a NaN reason) in most trials;
- ``classes`` matters: more classes, lower accuracy;
- ``optimizer`` matters a little (sgd is worse);
- ``batch_size`` does not change the accuracy, only the time: fewer, slower steps per epoch, and
  fewer seconds per epoch the larger the batch (``epoch_times``: the first epoch compiles, 5 s
  more);
- ``dropout`` (linear) shrinks the train-minus-val gap and barely moves the accuracy;
- ``beta`` is Keras Tuner ``reverse_log``: Optuna stores it as ``beta.reverse_log_u``.

Trials are written with ``optuna.create_trial`` and ``study.add_trials`` in one batch, carrying the
user attributes the runner writes (``hp_values``, ``history``, ``metrics``, ...).

``python -m search.testing.synthetic --trials 10000 --storage sqlite:///big.db`` builds one and
times ``analyze`` + ``to_dict`` + ``write_html`` on it.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

OPTIMIZERS = ["adam", "rmsprop", "sgd"]
BATCH_SIZES = [32, 64, 128, 256]
CLASSES = [10, 20, 50, 100]
CLASS_ACCURACY = {10: 0.95, 20: 0.90, 50: 0.80, 100: 0.70}
OPTIMIZER_PENALTY = {"adam": 0.0, "rmsprop": 0.01, "sgd": 0.04}
EPOCHS = 10
BETA_MIN, BETA_MAX = 0.9, 0.999

DEFAULTS = {"learning_rate": 1e-3, "optimizer": "adam", "batch_size": 32, "classes": 10,
            "dropout": 0.0, "beta": BETA_MIN}

DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
    "optimizer": CategoricalDistribution(OPTIMIZERS),
    "batch_size": CategoricalDistribution(BATCH_SIZES),
    "classes": CategoricalDistribution(CLASSES),
    "dropout": FloatDistribution(0.0, 0.5),
    "beta.reverse_log_u": FloatDistribution(0.0, 1.0),
}


def space_config() -> dict:
    """The space as ``keras_tuner.HyperParameters.get_config()`` would write it."""
    def entry(class_name, name, **config):
        return {"class_name": class_name,
                "config": {"name": name, "default": DEFAULTS[name], "conditions": [], **config}}
    return {
        "space": [
            entry("Float", "learning_rate", min_value=1e-5, max_value=1e-1, step=None, sampling="log"),
            entry("Choice", "optimizer", values=list(OPTIMIZERS), ordered=False),
            entry("Choice", "batch_size", values=list(BATCH_SIZES), ordered=True),
            entry("Choice", "classes", values=list(CLASSES), ordered=True),
            entry("Float", "dropout", min_value=0.0, max_value=0.5, step=None, sampling="linear"),
            entry("Float", "beta", min_value=BETA_MIN, max_value=BETA_MAX, step=None,
                  sampling="reverse_log"),
        ],
        "values": dict(DEFAULTS),
    }


def beta_from_u(u: float) -> float:
    """Keras Tuner's reverse_log conversion of a probability to a value."""
    return BETA_MAX + BETA_MIN - BETA_MIN * math.exp(math.log(BETA_MAX / BETA_MIN) * (1 - u))


def true_accuracy(hp: dict) -> float:
    """The noiseless objective of a configuration."""
    distance = math.log10(hp["learning_rate"]) + 3.5
    return (CLASS_ACCURACY[hp["classes"]] - 0.3 * (1.0 - math.exp(-distance * distance))
            - OPTIMIZER_PENALTY[hp["optimizer"]] - 0.02 * hp["dropout"])


TRAIN_IMAGES = 8_000
COMPILE_SECONDS = 5.0


def seconds_per_epoch(batch_size: int) -> float:
    """The steady (after the first) epoch's training seconds of a batch size."""
    return 0.5 + 2.0 * 32 / batch_size


def epoch_times(batch_size: int, epochs: int) -> list[dict]:
    """The runner's ``epoch_times`` attribute: the first epoch compiles, the rest are steady."""
    steps = math.ceil(TRAIN_IMAGES / batch_size)
    steady = seconds_per_epoch(batch_size)
    return [{"train_seconds": round(steady + (COMPILE_SECONDS if e == 0 else 0.0), 4), "steps": steps}
            for e in range(epochs)]


def synthetic_trial(hp: dict, rng: np.random.Generator, *, params: dict | None = None,
                    baseline: bool = False, ablation: dict | None = None) -> FrozenTrial:
    """One finished trial for configuration ``hp`` with the user attributes the runner writes."""
    if params is None:
        params = {k: v for k, v in hp.items() if k != "beta"}
        params["beta.reverse_log_u"] = 0.0 if baseline else float(rng.uniform())
    distributions = {k: DISTRIBUTIONS[k] for k in params}
    steady = seconds_per_epoch(hp["batch_size"])
    steps = math.ceil(TRAIN_IMAGES / hp["batch_size"])
    trainable = 120_000 + 1_000 * hp["classes"]
    attrs = {"hp_values": dict(hp), "trainable_params": trainable, "non_trainable_params": 256,
             "worker": {"host": "synthetic", "pid": 0, "slot": 0}, "ms_per_step": 1000.0 * steady / steps}
    if baseline:
        attrs["baseline"] = True
    if ablation is not None:
        attrs["ablation"] = dict(ablation)
    if hp["learning_rate"] >= 1e-2 and rng.uniform() < 0.8:
        nan_epoch = int(rng.integers(1, 4))
        curve = list(np.linspace(0.3, 0.2, nan_epoch))
        times = epoch_times(hp["batch_size"], nan_epoch)
        attrs.update(history={"val_accuracy": curve, "accuracy": curve}, epochs=nan_epoch,
                     best_epoch=0, epoch_times=times,
                     train_seconds=round(sum(e["train_seconds"] for e in times), 4),
                     trial_seconds=round(sum(e["train_seconds"] for e in times) + 1.0, 4),
                     fail_reason=f"diverged: the loss became NaN at epoch {nan_epoch + 1}")
        return optuna.create_trial(state=TrialState.FAIL, params=params,
                                   distributions=distributions, user_attrs=attrs)
    final = float(np.clip(true_accuracy(hp) + rng.normal(0.0, 0.01), 0.01, 0.999))
    pruned = rng.uniform() < 0.05
    epochs = int(rng.integers(2, 5)) if pruned else EPOCHS
    ramp = 1.0 - np.exp(-np.arange(1, epochs + 1) / 2.0)
    val = np.clip(final * ramp / ramp[-1] if not pruned else final * ramp * 0.8, 0.0, 1.0)
    gap = max(0.0, 0.08 - 0.12 * hp["dropout"])
    train = np.clip(val + gap * ramp, 0.0, 1.0)
    best_epoch = int(np.argmax(val))
    history = {"val_accuracy": val.round(4).tolist(), "accuracy": train.round(4).tolist(),
               "loss": (1.0 - train).round(4).tolist(), "val_loss": (1.0 - val).round(4).tolist()}
    times = epoch_times(hp["batch_size"], epochs)
    attrs.update(history=history, epochs=epochs, best_epoch=best_epoch, epoch_times=times,
                 metrics={k: v[best_epoch] for k, v in history.items()},
                 train_seconds=round(sum(e["train_seconds"] for e in times), 4),
                 trial_seconds=round(sum(e["train_seconds"] for e in times) + 1.0, 4))
    value = float(history["val_accuracy"][best_epoch])
    return optuna.create_trial(
        state=TrialState.PRUNED if pruned else TrialState.COMPLETE, value=value, params=params,
        distributions=distributions, user_attrs=attrs,
        intermediate_values={i: float(v) for i, v in enumerate(history["val_accuracy"])})


def random_configuration(rng: np.random.Generator) -> dict:
    return {
        "learning_rate": float(10 ** rng.uniform(-5, -1)),
        "optimizer": OPTIMIZERS[int(rng.integers(len(OPTIMIZERS)))],
        "batch_size": BATCH_SIZES[int(rng.integers(len(BATCH_SIZES)))],
        "classes": CLASSES[int(rng.integers(len(CLASSES)))],
        "dropout": float(rng.uniform(0.0, 0.5)),
    }


def build_study(n_trials: int, *, storage=None, study_name: str = "synthetic", seed: int = 0,
                running: int = 0) -> optuna.Study:
    """A study of ``n_trials`` finished trials (first: the default baseline) plus ``running``."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    trials = [synthetic_trial(dict(DEFAULTS), rng, baseline=True)] if n_trials else []
    for _ in range(n_trials - len(trials)):
        hp = random_configuration(rng)
        u = float(rng.uniform())
        hp["beta"] = beta_from_u(u)
        params = {k: v for k, v in hp.items() if k != "beta"}
        params["beta.reverse_log_u"] = u
        trials.append(synthetic_trial(hp, rng, params=params))
    for _ in range(running):
        trials.append(optuna.create_trial(state=TrialState.RUNNING,
                                          params={"learning_rate": 1e-3},
                                          distributions={"learning_rate": DISTRIBUTIONS["learning_rate"]}))
    study.add_trials(trials)
    return study


def build_search_study(n_trials: int, storage: str, study_name: str = "synthetic",
                       seed: int = 0) -> optuna.Study:
    """:func:`build_study`, registered as ``search start`` registers a study (its record: the
    space, the configuration, the budget), so the ``search`` commands read it."""
    from search.options import StudyConfig
    from search.storage import StudyRecord, StudyRecords, open_storage

    study = build_study(n_trials, storage=storage, study_name=study_name, seed=seed)
    source = "# synthetic: no space module; trials made by search.testing.synthetic\n"
    config = StudyConfig(space_path="synthetic.py", data="synthetic", space=space_config())
    StudyRecords(open_storage(storage).engine).add(StudyRecord(
        study_name=study_name, space_path="synthetic.py",
        space_sha256=hashlib.sha256(source.encode()).hexdigest(), space_source=source,
        config=config.to_dict(), budget=n_trials, claimed=n_trials))
    return study


def add_ablation_trials(study: optuna.Study, plan: list[dict], seed: int = 1) -> None:
    """Run an ablation plan synthetically: one finished trial per planned configuration."""
    rng = np.random.default_rng(seed)
    trials = []
    for entry in plan:
        hp = entry["params"]
        params = {k: v for k, v in hp.items() if k in DISTRIBUTIONS}
        trials.append(synthetic_trial(hp, rng, params=params, ablation=entry["ablation"]))
    study.add_trials(trials)


def _main() -> None:  # pragma: no cover - a benchmark, run by hand
    from search.analysis import analyze, write_html

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--storage", default="sqlite:///synthetic.db")
    parser.add_argument("--html", default="synthetic.html")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        optuna.load_study(study_name="synthetic", storage=args.storage)
    except KeyError:
        started = time.perf_counter()
        build_study(args.trials, storage=args.storage)
        print(f"built {args.trials} trials in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    study = optuna.load_study(study_name="synthetic", storage=args.storage)
    result = analyze(study)
    result.to_dict()
    analyzed = time.perf_counter()
    write_html(result, study, args.html)
    done = time.perf_counter()
    print(f"analyze + to_dict {analyzed - started:.2f} s, write_html {done - analyzed:.2f} s, "
          f"total {done - started:.2f} s ({result.importance.method})")


if __name__ == "__main__":  # pragma: no cover
    _main()


# Calibration studies: additive known effects, Gaussian seed noise, random design, a pruner that
# stops trials below the running median at the first epoch (so pruned trials are the bad ones).
CALIBRATION_EFFECTS = {
    "optimizer": {"adam": 0.06, "rmsprop": 0.02, "sgd": -0.08},      # matters
    "lr_decade": {"1e-4": -0.05, "1e-3": 0.05, "1e-2": 0.0},          # matters
    "batch_size": {16: 0.0, 64: 0.0, 256: 0.0, 1024: 0.0},            # a true null
    "flip": {"on": 0.01, "off": -0.01},                               # small
}
CALIBRATION_BASE = 0.7


def true_effects(effects: dict = CALIBRATION_EFFECTS) -> dict:
    """Each value's effect as ``search analyze`` defines it: its mean minus the average of the
    factor's values (at the final epoch)."""
    return {name: {v: e - float(np.mean(list(values.values()))) for v, e in values.items()}
            for name, values in effects.items()}


def calibration_trials(seed: int, n_trials: int = 60, noise: float = 0.02, epochs: int = 5,
                       prune_share: float = 0.5, effects: dict = CALIBRATION_EFFECTS) -> list[FrozenTrial]:
    """A study's finished trials whose objective is ``CALIBRATION_BASE`` plus the values' effects
    plus noise at the final epoch, reached by the same curve for every trial (each epoch adds the
    same amount); after the first epoch a trial below the median so far is pruned with
    probability ``prune_share``."""
    rng = np.random.default_rng(seed)
    distributions = {name: CategoricalDistribution(list(values)) for name, values in effects.items()}
    trials, first_epoch = [], []
    for number in range(n_trials):
        hp = {name: list(values)[int(rng.integers(len(values)))] for name, values in effects.items()}
        final = CALIBRATION_BASE + sum(effects[n][v] for n, v in hp.items()) + rng.normal(0, noise)
        curve = np.clip(final - (0.3 * 0.5 ** np.arange(epochs) - 0.3 * 0.5 ** (epochs - 1)), 0.0, 1.0)
        pruned = bool(first_epoch) and curve[0] < np.median(first_epoch) and rng.uniform() < prune_share
        first_epoch.append(curve[0])
        shown = curve[:1] if pruned else curve
        trial = optuna.create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE, value=float(shown.max()),
            params=dict(hp), distributions=distributions,
            intermediate_values={i: float(v) for i, v in enumerate(shown)},
            user_attrs={"hp_values": dict(hp), "history": {"val_accuracy": shown.round(6).tolist()},
                        "epochs": len(shown), "best_epoch": int(np.argmax(shown))})
        trial.number = number
        trials.append(trial)
    return trials
