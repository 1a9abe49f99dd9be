"""How `search start --ray` plans its workers on a Ray cluster's GPUs (no cluster needed)."""

from __future__ import annotations

import pytest

from search.errors import SearchError
from search.execution.launchers.ray import RayWorkerExit, plan


def test_workers_get_a_gpu_each_or_a_share_of_one_with_per_gpu():
    assert plan(4.0, None, None) == (4, 1.0)  # one per GPU of the cluster
    assert plan(4.0, None, 2) == (8, 0.5)  # --per-gpu 2: two packed on each GPU
    assert plan(4.0, 3, None) == (3, 1.0)  # --workers 3
    assert plan(0.0, None, None) == (1, 0.0)  # no GPU: CPU workers
    assert plan(0.0, 3, None) == (3, 0.0)
    with pytest.raises(SearchError, match="give --workers N or --per-gpu K, not both"):
        plan(4.0, 2, 2)


def test_a_worker_that_died_is_one_line():
    assert RayWorkerExit(1, "node-3", 4711, -9).line == (
        "Ray worker 1 (pid 4711 on node-3) killed by signal 9 (SIGKILL): it wrote no error")
