"""Replay of the recorded learning curves (``bench/results/learning_curves.jsonl.gz``): a space whose
trials train nothing but feed a configuration's recorded epochs through Keras callbacks.

``build(hp)`` declares the grid of a recorded space (``bench/curves.py``: the real space's names,
values, defaults and conditional scopes) and looks the chosen configuration up; ``fit`` calls the
callbacks it is given (``on_train_begin``, then ``on_epoch_begin``/``on_epoch_end`` per epoch with
the recorded loss, val_loss and val_accuracy as logs, ``on_train_end``) and honours
``model.stop_training``, ``epochs`` and ``initial_epoch``. So the service's trial callback, its
pruners, its trial budget and its worker loop act as they do in training, and so do Keras Tuner's
RandomSearch, BayesianOptimization and Hyperband (their own oracles and brackets; a Hyperband trial
promoted from ``initial_epoch`` k replays epochs k+1.. of the same recorded run, where Keras Tuner
would continue from the best epoch's weights).

Each epoch's cost is its recorded CPU seconds: passed in the logs as ``replay_seconds`` (so the
service stores it in the trial's history) and appended, with the configuration and the epoch, to
the hypermodel's ``trained`` list (Keras Tuner keeps the hypermodel instance it is given). A run
whose loss became NaN was recorded up to that epoch: its replay feeds the NaN loss (the service
fails the trial as diverged) and, for Keras Tuner, ends there.

Which curves (read by ``Replay()`` from the environment, so ``search start`` and its workers see the
same; the space's source stays the same):

- ``BENCH_REPLAY_SPACE``: ``mlp`` (default) or ``cnn``;
- ``BENCH_REPLAY_SEED``: the recorded seed (default 0);
- ``BENCH_REPLAY_TABLE``: the table's path (default the committed one);
- ``BENCH_REPLAY_PARTIAL=1``: the table is still being recorded: search the part of the grid it
  holds whole (``curves.Grid.complete_part``: the values of the grid's first parameter whose every
  configuration is recorded).

    BENCH_REPLAY_SPACE=cnn search start bench/spaces/replay.py --trials 50 --epochs 27
"""

import json
import os
import sys
from pathlib import Path

import keras
import keras_tuner as kt

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # the service loads a space by path: make ``bench`` importable
    sys.path.insert(0, str(_REPO))

from bench import curves  # noqa: E402

DATA = "digits"
OBJECTIVE = "val_accuracy"
COST = "cpu_seconds"  # the recorded cost of an epoch that the replay charges
_TABLES: dict = {}


def table(path) -> curves.Table:
    """The table at ``path``, read once per process (again when the file changed)."""
    path = Path(path)
    stamp = (str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)
    if _TABLES.get("stamp") != stamp:
        _TABLES["stamp"], _TABLES["table"] = stamp, curves.Table.load(path)
    return _TABLES["table"]


class ReplayModel(keras.Model):
    """What ``build`` returns: a Keras model with no weights that carries its recorded curve. Its
    "weights" file (Keras Tuner's best-epoch checkpoint) names the configuration and nothing else."""

    def __init__(self, curve: dict):
        super().__init__()
        self.curve = curve

    def call(self, inputs):
        return inputs

    def get_build_config(self):
        return None

    def build_from_config(self, config):
        pass

    def save_weights(self, filepath, overwrite=True, **kwargs):
        Path(filepath).write_text(json.dumps({"config": self.curve["config"]}))

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        saved = json.loads(Path(filepath).read_text())["config"]
        if curves.config_key(saved) != curves.config_key(self.curve["config"]):
            raise ValueError(f"checkpoint {filepath} is of another configuration")


class Replay(kt.HyperModel):
    def __init__(self, space: str | None = None, seed: int | None = None, table_path=None,
                 partial: bool | None = None):
        super().__init__()
        self.space = space or os.environ.get("BENCH_REPLAY_SPACE", "mlp")
        if self.space not in curves.GRIDS:
            raise ValueError(f"BENCH_REPLAY_SPACE is {self.space!r}: one of {', '.join(curves.GRIDS)}")
        self.seed = int(os.environ.get("BENCH_REPLAY_SEED", "0") if seed is None else seed)
        self.table_path = Path(table_path or os.environ.get("BENCH_REPLAY_TABLE", curves.TABLE))
        if not self.table_path.exists():
            raise ValueError(f"no learning-curve table at {self.table_path} (bench/learning_curves.py "
                             "records it)")
        self.grid = curves.GRIDS[self.space]
        self.partial = os.environ.get("BENCH_REPLAY_PARTIAL", "") == "1" if partial is None else partial
        if self.partial:  # a table still being recorded: the grid's slices it holds whole
            self.grid = self.grid.complete_part(table(self.table_path), self.seed)
        self.trained: list[tuple[str, int, float | None, float]] = []  # (config key, epoch, value, cost)

    def build(self, hp):
        config = self.grid.declare(hp)
        curve = table(self.table_path).get(self.space, self.seed, config)
        if curve is None:
            raise LookupError(f"{self.space} seed {self.seed}: {curves.config_key(config)} is not "
                              f"recorded in {self.table_path}")
        return ReplayModel(curve)

    def fit(self, hp, model, *args, epochs=1, initial_epoch=0, callbacks=None, **kwargs):
        history = keras.callbacks.History()
        recorded = model.curve["epochs"]
        listed = keras.callbacks.CallbackList([*(callbacks or []), history], model=model,
                                              epochs=epochs, steps=1, verbose=0)
        model.stop_training = False
        listed.on_train_begin()
        key = curves.config_key(model.curve["config"])
        for epoch in range(initial_epoch, min(epochs, len(recorded["val_accuracy"]))):
            listed.on_epoch_begin(epoch)
            logs = {name: _number(recorded[name][epoch]) for name in ("loss", "val_loss", "val_accuracy")}
            logs["replay_seconds"] = recorded[COST][epoch]
            self.trained.append((key, epoch, recorded["val_accuracy"][epoch], recorded[COST][epoch]))
            listed.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        listed.on_train_end()
        return history


def _number(value) -> float:
    return float("nan") if value is None else float(value)
