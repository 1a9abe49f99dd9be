"""The replay's tests run on a tiny hand-written table (tiny_table.py), its grid registered as the
recorded space "tiny"."""

import gc

import pytest

from bench import curves, efficiency

from . import tiny_table
from .tiny_table import TINY


@pytest.fixture(autouse=True)
def frozen_heap():
    """Keras Tuner and the service call gc.collect() before each trial; with TensorFlow loaded that
    takes most of a replayed trial. What is loaded before the test is frozen (not scanned)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def table(tmp_path, monkeypatch):
    monkeypatch.setitem(curves.GRIDS, "tiny", TINY)
    path = tmp_path / "curves.jsonl.gz"
    tiny_table.write(path)
    monkeypatch.setenv("BENCH_REPLAY_SPACE", "tiny")
    monkeypatch.setenv("BENCH_REPLAY_SEED", "0")
    monkeypatch.setenv("BENCH_REPLAY_TABLE", str(path))
    efficiency._patch_keras_tuner_tensorboard()  # Keras Tuner imports tensorboard, not installed here
    return curves.Table.load(path)
