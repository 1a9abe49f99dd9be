"""Stores that ``search`` did not write: a plain Optuna study in a SQLite file (the way an Optuna
user makes one, ``study.optimize``), a copy of it (``optuna.copy_study``), and the file's state
(its bytes and its ``-wal``/``-shm`` companions), to check that reading them changes nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna

PLAIN = "plain"
COPIED = "copied"


def _objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    units = trial.suggest_int("units", 8, 64)
    return (lr - 0.01) ** 2 + (0.1 if optimizer == "sgd" else 0.0) + units / 1000


def plain_optuna_store(path: Path, trials: int = 12, copy: bool = True) -> str:
    """A SQLite file holding the plain Optuna study ``plain`` (and its copy ``copied``); its URL."""
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name=PLAIN, storage=url,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=trials)
    if copy:
        optuna.copy_study(from_study_name=PLAIN, from_storage=url, to_storage=url,
                          to_study_name=COPIED)
    return url


def file_state(path: Path) -> dict[str, str | None]:
    """The sha256 of the store file and of its ``-wal``/``-shm`` files (None: absent)."""
    state = {}
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        state[part.name] = hashlib.sha256(part.read_bytes()).hexdigest() if part.exists() else None
    return state
