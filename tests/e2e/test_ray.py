"""`search start --ray ADDRESS` on a real local Ray cluster (search/testing/ray.py: `ray start
--head` on loopback, CPU only) against a real PostgreSQL study: Ray places the workers (each a
process under a Ray task), the budget is exact, and a worker killed mid-trial loses nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from search.testing.cli import popen_cli, run_cli
from search.testing.faults import assert_killed_trial_retried
from search.testing.studies import (
    FAST_FAULTS,
    running_worker_after_a_completed_trial,
    wait_for_trials,
    worker_rows,
)

pytestmark = pytest.mark.slow

EPOCHS = 8


@pytest.fixture(scope="module")
def ray_cluster():
    from search.testing.ray import RayCluster, RayUnavailable

    try:
        cluster = RayCluster().start()
    except (RayUnavailable, OSError) as exc:
        pytest.skip(f"no Ray cluster for the tests: {exc}")
    try:
        yield cluster
    finally:
        cluster.destroy()


def _parent_command(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
    return Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_ray_places_the_workers_and_a_killed_one_loses_nothing(ray_cluster, tiny_space, pg_url,
                                                                postgres_server):
    budget = 4
    proc = popen_cli("start", str(tiny_space), "--storage", pg_url, "--trials", str(budget),
                     "--epochs", str(EPOCHS), "--workers", "2", "--pruner", "none", *FAST_FAULTS,
                     "--ray", ray_cluster.address)

    def a_worker_mid_trial(trials):
        row = running_worker_after_a_completed_trial(pg_url, EPOCHS, trials)
        return (row, trials) if row is not None else None

    row, seen = wait_for_trials(pg_url, a_worker_mid_trial, 200, "a Ray worker in the middle of a trial",
                                proc)
    parent = _parent_command(row.pid)
    os.kill(row.pid, signal.SIGKILL)
    completed_before = {t.number: t.value for t in seen if t.state.name == "COMPLETE"}
    assert parent.startswith("ray::run_placed_worker"), parent  # a Ray task started it
    assert postgres_server.password not in Path(f"/proc/{os.getpid()}/cmdline").read_text()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert_killed_trial_retried(pg_url, row.trial_number, completed_before, budget)
    assert f"note: Ray worker {row.slot} (pid {row.pid} on " in out
    assert "killed by signal 9 (SIGKILL)" in out
    rows = worker_rows(pg_url)
    assert len(rows) == 2 and sorted(r.slot for r in rows) == [0, 1]


def test_an_unreachable_ray_cluster_is_one_line_before_anything_loads(tiny_space, store_url):
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--ray", "127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: --ray 127.0.0.1:1: cannot reach the Ray cluster: "
                                     "Connection refused; is `ray start --head` running there?")
    result = run_cli("start", str(tiny_space), "--storage", store_url, "--ray", "auto", "--gpus", "0")
    assert result.returncode == 1 and "with --ray, Ray places the workers" in result.stderr
