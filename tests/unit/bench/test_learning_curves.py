"""The recorder of the learning-curve table (bench/learning_curves.py): real training of a two-
configuration slice of the mlp grid, then a resume that records only what is missing."""

import os

import pytest

from bench import curves, learning_curves

SLICE = curves.Grid("mlp", curves.MLP.path, (
    curves.Param("units_0", (32, 64), 64),
    curves.Param("batch_size", (32, 128), 32),
))


@pytest.fixture
def two_configs(monkeypatch):
    monkeypatch.setitem(curves.GRIDS, "mlp", SLICE)
    saved = dict(os.environ)  # the recorder sets the thread variables of its own process
    yield SLICE
    os.environ.clear()
    os.environ.update(saved)


def curves_in(path):
    return [r for r in curves.read_records(path)[0] if r["kind"] == "curve"]


@pytest.mark.slow  # trains real models
def test_the_recorder_trains_each_configuration_once_and_resumes_a_cut_table(tmp_path, two_configs):
    out = tmp_path / "t.jsonl.gz"
    argv = ["--spaces", "mlp", "--seeds", "1", "--epochs", "2", "--out", str(out)]
    assert learning_curves.main(argv + ["--limit", "3"]) == 0
    recorded = curves_in(out)
    assert [r["config"] for r in recorded] == SLICE.configs()[:3]
    for r in recorded:
        assert all(len(r["epochs"][m]) == 2 for m in curves.METRICS)
        assert 0.0 <= min(r["epochs"]["val_accuracy"]) and max(r["epochs"]["val_accuracy"]) <= 1.0
        assert all(s > 0 for s in r["epochs"]["cpu_seconds"]) and r["header"] == 0
    header = curves.read_records(out)[0][0]
    assert header["kind"] == "header" and header["machine"]["git_commit"]
    assert header["settings"]["threads"] == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    assert "3/4 configurations" in (tmp_path / "t.jsonl.gz.progress").read_text()

    with open(out, "r+b") as f:  # killed while writing the third record: half of it is on disk
        size = out.stat().st_size
        f.truncate(size - 40)
    assert learning_curves.main(argv) == 0
    again = curves_in(out)
    assert [r["config"] for r in again] == SLICE.configs()  # the cut one again, then the fourth
    assert again[:2] == recorded[:2] and {r["header"] for r in again[2:]} == {1}
    assert "4/4 configurations" in (tmp_path / "t.jsonl.gz.progress").read_text()

    before = out.read_bytes()
    assert learning_curves.main(argv) == 0  # nothing left: nothing trained, nothing written
    assert out.read_bytes() == before
