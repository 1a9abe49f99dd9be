"""The benchmarks run (bench/): their helpers, and the cheapest script end to end at its smallest
setting. Benchmarks, not tests of speed: nothing here asserts a timing."""

import json
import math
import subprocess
import sys
from pathlib import Path

from bench import common, efficiency

REPO = Path(__file__).resolve().parent.parent


def test_percentile_interpolates_like_numpy():
    assert common.percentile([], 50) is None
    assert common.percentile([3.0], 99) == 3.0
    assert common.percentile([1, 2, 3, 4], 50) == 2.5
    assert math.isclose(common.percentile(range(101), 99), 99.0)
    assert common.percentile([0.3, math.inf, math.inf], 50) == math.inf  # not nan (a seed that never got there)


def test_best_curve_and_epochs_to_reach_a_target():
    values = [0.2, float("nan"), 0.5, 0.4, 0.9]
    assert efficiency.best_curve(values) == [0.2, 0.2, 0.5, 0.5, 0.9]
    assert efficiency.best_at(values, 4) == 0.5
    assert efficiency.epochs_to_reach(values, 0.5, budget=5) == 3
    assert efficiency.epochs_to_reach(values, 0.9, budget=4) is None  # not within the budget


def test_store_scaling_smallest_setting_runs_end_to_end(tmp_path):
    out = tmp_path / "store.json"
    result = subprocess.run(
        [sys.executable, "bench/store_scaling.py", "--backends", "sqlite", "--workers", "1",
         "--levels", "5", "--trials-per-worker", "1", "--sleep", "0.01", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Store scaling" in result.stdout
    run = json.loads(out.read_text())["runs"][0]
    assert run["returncode"] == 0
    assert run["trials_done_after_barrier"] == 2  # one trial per worker at the barrier, one after
    assert run["stored_before"] == 5 and run["lock_errors"] == 0 and run["failed_trials"] == 0
    assert run["latency"]["ask"]["n"] >= 1 and run["latency"]["tell"]["n"] >= 1
