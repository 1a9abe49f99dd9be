"""The replay comparison (bench/replay_efficiency.py, ``efficiency.py --replay``): compute budgets
in epochs and recorded seconds, the IQM and its interval, a partial table's complete part, and a
small run end to end on the tiny table."""

import json

import pytest

from bench import curves, efficiency, replay_efficiency

from . import tiny_table
from .tiny_table import TINY

RUN = [(0.5, 1.0), (None, 2.0), (0.7, 0.5), (0.6, 3.0), (0.9, 1.0)]  # (val_accuracy, recorded s)


def test_a_budget_counts_epochs_or_recorded_seconds():
    assert replay_efficiency.best_within(RUN, 3, "epochs") == 0.7
    assert replay_efficiency.best_within(RUN, 3.4, "seconds") == 0.5  # the third epoch ends at 3.5 s
    assert replay_efficiency.best_within(RUN, 3.5, "seconds") == 0.7
    assert replay_efficiency.compute_to_reach(RUN, 0.7, 5, "epochs") == 3
    assert replay_efficiency.compute_to_reach(RUN, 0.7, 10, "seconds") == 3.5
    assert replay_efficiency.compute_to_reach(RUN, 0.9, 4, "epochs") is None  # not within the budget
    assert replay_efficiency.best_within([(None, 1.0)], 1, "epochs") is None  # a diverged trial scores nothing


def test_the_iqm_is_the_mean_of_the_middle_half_and_its_interval_holds_it():
    iqm, low, high = replay_efficiency.iqm_interval([1, 2, 3, 4, 5, 6, 7, 100])
    assert iqm == 4.5  # the outlier does not move it
    assert 1 <= low <= iqm <= high < 100
    assert replay_efficiency.iqm_interval([0.9, 0.9]) == (0.9, 0.9, 0.9)
    assert replay_efficiency.iqm_interval([]) == (None, None, None)


def test_a_partial_table_replays_the_part_of_the_grid_it_holds_whole(tmp_path):
    path = tmp_path / "partial.jsonl.gz"
    gap = {"units": 16, "deep": True, "width": 8}  # not recorded yet
    for index, config in enumerate(TINY.configs()):
        if config != gap:
            curves.append_record(path, tiny_table.curve_of(index, config))
    table = curves.Table.load(path)
    part = TINY.complete_part(table, 0)
    # units=16 (the default) misses a configuration: keep it alone, then deep=False (complete)
    assert part.configs() == [{"units": 16, "deep": False}]
    whole = tmp_path / "whole.jsonl.gz"
    tiny_table.write(whole)
    assert TINY.complete_part(curves.Table.load(whole), 0) is TINY
    with pytest.raises(LookupError, match="default"):
        TINY.complete_part(table, 1)  # nothing of seed 1


def test_a_grid_restricted_drops_a_child_whose_condition_cannot_hold():
    grid = curves.MLP.restricted("layers", (1, 2))
    names = [p.name for p in grid.params]
    assert "units_2" not in names and dict((p.name, p.when) for p in grid.params)["units_1"] == ("layers", (2,))
    assert all(c["layers"] in (1, 2) for c in grid.configs())


@pytest.mark.slow  # a few hundred replayed trials
def test_the_replay_comparison_end_to_end_on_the_tiny_table(tmp_path, table, capsys):
    out = tmp_path / "replay.json"
    payload = efficiency.main(["--replay", "--spaces", "tiny", "--seeds", "2", "--budgets", "1,2",
                               "--tuners", "kt_hyperband,kt_random,tpe_asha", "--table",
                               str(tiny_table_path(table)), "--out", str(out)])
    assert json.loads(out.read_text())["summary"] == payload["summary"]
    assert [r["tuner"] for r in payload["summary"]] == ["kt_hyperband", "kt_random", "tpe_asha"]
    best_recorded = max(max(c["epochs"]["val_accuracy"]) for c in table.curves.values())
    for run in payload["runs"]:
        unit = run["unit_budget"]["epochs"]
        if run["tuner"] == "tpe_asha":  # the service's study is resumed until the budget is spent
            assert 2 * unit <= run["epochs_trained"] <= 2 * unit + tiny_table.E or run["trials"] >= 9
        if run["tuner"] == "kt_random":  # trials of E epochs, one more than the budget holds
            assert run["epochs_trained"] <= (-(-2 * unit // tiny_table.E) + 1) * tiny_table.E
        for cell, best in run["best"].items():
            assert best is None or best <= best_recorded
        if run["tuner"] == "kt_hyperband":  # it reaches its own best within its own budget
            assert all(f is not None and f <= 1.0 for f in run["to_hb"].values())
    assert "Search efficiency on the recorded curves" in capsys.readouterr().out


def tiny_table_path(table) -> str:
    import os

    return os.environ["BENCH_REPLAY_TABLE"]


@pytest.mark.slow  # the worker loop's SQLite store: ~1 s a trial
@pytest.mark.parametrize("kind", ["tpe_asha", "random_asha", "tpe_hyperband"])
def test_the_in_memory_loop_runs_the_trials_the_worker_loop_runs(tmp_path, table, kind):
    budget = 45
    (tmp_path / "w").mkdir()
    (tmp_path / "m").mkdir()
    by_worker, info_worker = replay_efficiency.run_ours(kind, 3, tiny_table.E, budget, tmp_path / "w")
    in_memory, info_memory = replay_efficiency.run_ours_in_memory(kind, 3, tiny_table.E, budget, tmp_path / "m")
    n = min(len(by_worker), len(in_memory))
    assert n >= budget
    assert in_memory[:n] == by_worker[:n]  # the same epochs, in the same order, with the same costs
    assert info_memory["states"].get("PRUNED", 0) > 0
