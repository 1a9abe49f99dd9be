"""The benchmarks run (bench/): the cheapest script end to end at its smallest setting (their
helpers: tests/unit/test_bench.py). Benchmarks, not tests of speed: nothing here asserts a timing."""

import json
import subprocess
import sys

from search.testing.cli import REPO


def test_store_scaling_smallest_setting_runs_end_to_end(tmp_path):
    out = tmp_path / "store.json"
    result = subprocess.run(
        [sys.executable, "bench/store_scaling.py", "--backends", "sqlite", "--workers", "1",
         "--levels", "5", "--trials-per-worker", "1", "--sleep", "0.01", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Store scaling" in result.stdout
    run = json.loads(out.read_text())["runs"][0]
    assert run["returncode"] == 0
    assert run["trials_done_after_barrier"] == 2  # one trial per worker at the barrier, one after
    assert run["stored_before"] == 5 and run["lock_errors"] == 0 and run["failed_trials"] == 0
    assert run["latency"]["ask"]["n"] >= 1 and run["latency"]["tell"]["n"] >= 1


def test_ask_tell_smallest_setting_runs_and_ours_runs_fewer_statements(tmp_path):
    out = tmp_path / "ask_tell.json"
    result = subprocess.run(
        [sys.executable, "bench/ask_tell.py", "--stored", "5", "--trials", "3", "--warmup", "1",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Ask+tell at 5 stored trials" in result.stdout
    runs = {r["name"].split()[0] + " " + r["backend"]: r for r in json.loads(out.read_text())["results"]}
    assert {"search sqlite", "optuna sqlite"} <= set(runs)  # PostgreSQL too where one can start
    for backend in {r["backend"] for r in runs.values()}:
        ours, plain = runs[f"search {backend}"], runs[f"optuna {backend}"]
        assert ours["n"] == plain["n"] == 3
        assert ours["ask+tell statements"] < plain["ask+tell statements"]
        assert ours["transactions"] < plain["transactions"]
