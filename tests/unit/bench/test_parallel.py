"""bench/parallel.py on the tiny table: workers share one study until the budget's epochs are
trained, and a configuration asked again is counted as a duplicate (the tiny grid has 9
configurations, so a study of more trials must hold at least that many more duplicates)."""

import json

import pytest

from bench import parallel

from .tiny_table import TINY, E


@pytest.mark.parametrize("workers", ["1", "3"])
def test_workers_share_the_budget_and_every_duplicate_is_counted(tmp_path, table, workers):
    out = tmp_path / "parallel.json"
    payload = parallel.main(["--spaces", "tiny", "--seeds", "1", "--workers", workers, "--trials", "3",
                             "--tuners", "tpe,random", "--time-scale", "0.01", "--table",
                             _path(), "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == payload["rows"]
    configs = len(TINY.configs())
    for run in payload["runs"]:
        assert run["epochs"] >= 3 * E  # workers start trials until the budget's epochs are trained
        assert run["duplicates"] >= run["trials"] - configs
        assert 0 <= run["duplicate_share"] <= 1 and run["best"] is not None


def _path():
    import os

    return os.environ["BENCH_REPLAY_TABLE"]
