"""bench/scale.py at its smallest setting, end to end on a real PostgreSQL server: simulated
workers run the budget exactly (0 lost, 0 duplicated) and the server's connections are counted.
A benchmark, not a test of speed: nothing here asserts a timing."""

import json
import os
import subprocess
import sys

import pytest

from search.testing.cli import REPO
from search.testing.postgres import PostgresUnavailable, find_binaries

pytestmark = pytest.mark.slow


def test_scale_smallest_setting_runs_end_to_end(tmp_path):
    try:
        find_binaries()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    out = tmp_path / "scale.json"
    result = subprocess.run(
        [sys.executable, "bench/scale.py", "--workers", "4", "--trial-seconds", "1",
         "--processes", "2", "--epochs", "2", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=400, check=False,
        env={**os.environ, "TMPDIR": "/tmp"})  # its server's folder: one the postgres user can enter
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Store scale" in result.stdout
    row = json.loads(out.read_text())["rows"][0]
    assert row["budget"] == 8 and row["lost"] == 0 and row["duplicated"] == 0 and row["errors"] == []
    assert row["calls"]["ask"]["n"] == 8 and row["calls"]["tell"]["n"] == 8
    assert row["calls"]["claim"]["n"] == 8 + 4  # each worker's last claim finds the budget spent
    assert 1 <= row["connections_peak"] <= 4 * 5  # each worker's pool: one kept, four more at most
