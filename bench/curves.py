"""The learning-curve table: the grids of the two recorded spaces, and the file that holds their
curves (written by ``bench/learning_curves.py``, read by the replay, ``bench/spaces/replay.py``).

A grid is the real space (``spaces/cnn.py``, ``bench/spaces/mlp.py``) restricted to a few values
of some of its hyperparameters; every other hyperparameter keeps the space's default (Keras Tuner
fills a parameter that has no value with its default). A grid's configurations are the full
product of its values, with conditional parameters (the mlp's ``units_1`` needs two layers or
more) present only where their condition holds, exactly as the real space declares them. Every
grid holds its space's default configuration, so the default-first baseline trial is recorded.

The table is one gzip-compressed JSON-lines file, appended to one record at a time (each record its
own gzip member, so an interrupted run loses at most the record being written):

- ``{"kind": "header", "id": N, "machine": {...commit, host, backend...}, "settings": {...}}``,
  one per run of the recorder (a resumed run adds its own);
- ``{"kind": "curve", "space": "mlp", "seed": 0, "config": {...}, "header": N,
  "epochs": {"loss": [...], "val_loss": [...], "val_accuracy": [...], "seconds": [...],
  "cpu_seconds": [...]}, "build_seconds": s, "params": n}``, one per (space, configuration, seed):
  one value per epoch trained (all E of them unless the loss became NaN, which stops training as
  the service's trial callback does).
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TABLE = BENCH / "results" / "learning_curves.jsonl.gz"
METRICS = ("loss", "val_loss", "val_accuracy", "seconds", "cpu_seconds")


@dataclass(frozen=True)
class Param:
    """One grid parameter: its name in the real space, the values recorded, and the condition
    under which the real space declares it (``(parent, parent_values)``; None: always)."""

    name: str
    values: tuple
    default: object  # the real space's default (checked by the recorder against the space)
    when: tuple[str, tuple] | None = None

    def declare(self, hp):
        """A Boolean as ``hp.Boolean`` (as the real spaces declare it; Keras Tuner would turn a
        Choice of True and False into 1 and 0), anything else as ``hp.Choice``."""
        if set(self.values) == {False, True} and all(isinstance(v, bool) for v in self.values):
            return hp.Boolean(self.name, default=self.default)
        return hp.Choice(self.name, list(self.values), default=self.default)


@dataclass(frozen=True)
class Grid:
    space: str  # the short name: "cnn", "mlp"
    path: Path  # the real space module
    params: tuple[Param, ...] = field(default=())

    def configs(self) -> list[dict]:
        """Every configuration of the grid, in a fixed order (the product, conditionals pruned)."""
        out = [{}]
        for p in self.params:
            grown = []
            for config in out:
                if p.when is not None and config.get(p.when[0]) not in p.when[1]:
                    grown.append(config)
                else:
                    grown.extend({**config, p.name: v} for v in p.values)
            out = grown
        return out

    def default(self) -> dict:
        """The space's default configuration (conditionals pruned as in :meth:`configs`)."""
        config = {}
        for p in self.params:
            if p.when is None or config.get(p.when[0]) in p.when[1]:
                config[p.name] = p.default
        return config

    def restricted(self, name: str, values: tuple) -> "Grid":
        """The grid with parameter ``name`` restricted to ``values``; a conditional parameter keeps
        only the conditions its parent can still meet, and goes where none is left (Keras Tuner
        sets a parent to a condition's value to discover its children)."""
        params = {p.name: (Param(p.name, values, p.default, p.when) if p.name == name else p)
                  for p in self.params}
        kept = []
        for p in params.values():
            if p.when is not None:
                parent = next(q for q in kept if q.name == p.when[0]) if any(
                    q.name == p.when[0] for q in kept) else None
                meets = tuple(v for v in p.when[1] if parent is not None and v in parent.values)
                if not meets:
                    continue
                p = Param(p.name, p.values, p.default, (p.when[0], meets))
            kept.append(p)
        return Grid(self.space, self.path, tuple(kept))

    def complete_part(self, table: "Table", seed: int) -> "Grid":
        """The largest part of the grid, around its default, that the table holds whole for ``seed``
        (itself when the table holds it all): parameter by parameter, keep the values whose every
        configuration is recorded if the default's is among them, else keep the default only and
        go on. The recorder goes through the grid in order, so a partial table holds whole slices
        of it. Raises LookupError when not even the default configuration is recorded."""
        def complete(grid):
            return all(table.get(self.space, seed, c) is not None for c in grid.configs())

        grid = self
        for p in self.params:
            if complete(grid):
                return grid
            kept = tuple(v for v in p.values if complete(grid.restricted(p.name, (v,))))
            if p.default in kept:
                return grid.restricted(p.name, kept)
            grid = grid.restricted(p.name, (p.default,))
        if complete(grid):
            return grid
        raise LookupError(f"{self.space} seed {seed}: the table does not hold the grid's default "
                          "configuration yet")

    def declare(self, hp) -> dict:
        """Declare the grid's parameters on a Keras Tuner ``hp`` (Choices and Booleans, with
        conditional scopes where the real space has a condition); returns the active configuration."""
        config = {}
        for p in self.params:
            if p.when is None:
                config[p.name] = p.declare(hp)
                continue
            parent, values = p.when
            with hp.conditional_scope(parent, list(values)):
                if config.get(parent) in values:
                    config[p.name] = p.declare(hp)
        return config


# The cnn space (spaces/cnn.py): depth, width, batch norm, dropout, optimizer, learning rate and
# batch size; convs per block (1), kernel (3), activation (relu), weight decay (none), pooling
# (global average), dense units (64) and dense dropout (0) stay at the space's defaults.
CNN = Grid("cnn", REPO / "spaces" / "cnn.py", (
    Param("conv_blocks", (1, 2, 3), 2),
    Param("filters", (16, 32, 64), 32),
    Param("batch_norm", (False, True), False),
    Param("conv_dropout", (0.0, 0.3), 0.0),
    Param("optimizer", ("adam", "sgd"), "adam"),
    Param("learning_rate", (0.001, 0.003, 0.01), 0.003),
    Param("batch_size", (32, 128), 32),
))

# The mlp space (bench/spaces/mlp.py): activation, depth and the width of each layer (declared only
# for the layers that exist, as the space does), optimizer, learning rate and batch size; dropout
# stays at 0 and SGD's momentum at 0.9 (the defaults).
MLP = Grid("mlp", BENCH / "spaces" / "mlp.py", (
    Param("activation", ("relu", "tanh"), "relu"),
    Param("layers", (1, 2, 3), 1),
    Param("units_0", (32, 64, 256), 64),
    Param("units_1", (32, 64, 256), 64, when=("layers", (2, 3))),
    Param("units_2", (32, 64, 256), 64, when=("layers", (3,))),
    Param("optimizer", ("adam", "sgd"), "adam"),
    Param("learning_rate", (0.001, 0.01), 0.001),
    Param("batch_size", (32, 128), 32),
))

GRIDS = {"cnn": CNN, "mlp": MLP}


def config_key(config: dict) -> str:
    """The lookup key of a configuration: its values as canonical JSON (sorted names)."""
    return json.dumps({k: config[k] for k in sorted(config)}, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# the file


def read_records(path: Path) -> tuple[list[dict], int]:
    """Every complete record of the table at ``path`` (none if it does not exist), and the byte
    length of the complete part (a run killed mid-write leaves a partial last member behind)."""
    path = Path(path)
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    records, offset = [], 0
    while offset < len(data):
        decoder = zlib.decompressobj(wbits=31)  # one gzip member
        try:
            text = decoder.decompress(data[offset:])
        except zlib.error:
            break
        if not decoder.eof:
            break
        try:
            records.extend(json.loads(line) for line in text.decode("utf-8").splitlines() if line)
        except ValueError:
            break
        offset = len(data) - len(decoder.unused_data)
    return records, offset


def append_record(path: Path, record: dict) -> None:
    """Append one record as its own gzip member, flushed to disk."""
    import os

    line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
    with open(path, "ab") as f:
        f.write(gzip.compress(line, compresslevel=9, mtime=0))
        f.flush()
        os.fsync(f.fileno())


def repair(path: Path) -> int:
    """Cut a partial last record off the table (what an interrupted write left); returns the records
    kept."""
    records, good = read_records(path)
    if Path(path).exists() and Path(path).stat().st_size != good:
        with open(path, "r+b") as f:
            f.truncate(good)
    return len(records)


def finite(values) -> list:
    """Per-epoch values for JSON: a non-finite value (a NaN loss) is stored as null."""
    return [None if v is None or not math.isfinite(v) else v for v in values]


class Table:
    """The recorded curves, looked up by (space, seed, configuration)."""

    def __init__(self, records: list[dict]):
        self.headers = [r for r in records if r.get("kind") == "header"]
        self.curves: dict[tuple[str, int, str], dict] = {}
        for r in records:
            if r.get("kind") == "curve":
                self.curves[(r["space"], int(r["seed"]), config_key(r["config"]))] = r

    @classmethod
    def load(cls, path: Path = TABLE) -> "Table":
        records, _ = read_records(path)
        return cls(records)

    def get(self, space: str, seed: int, config: dict) -> dict | None:
        return self.curves.get((space, int(seed), config_key(config)))

    def seeds(self, space: str) -> list[int]:
        return sorted({s for (sp, s, _) in self.curves if sp == space})

    def complete(self, space: str, seed: int) -> bool:
        """Whether every configuration of the space's grid is recorded for ``seed``."""
        grid = GRIDS[space]
        return all(self.get(space, seed, c) is not None for c in grid.configs())

    def __len__(self) -> int:
        return len(self.curves)
