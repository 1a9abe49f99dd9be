"""analyze + to_dict + write_html on a 10,000-trial SQLite study, in a fresh process (cold read,
as the CLI would): under 15 s on the 2-core development machine.

Building the study goes through Optuna's ``add_trials`` (about 6 minutes for 10,000 trials with
their user attributes), so the test runs only when asked: ``SEARCH_BENCH_DB=/path/study.db``
(built there on the first run, reused after). ``python -m search.testing.synthetic`` times the
same thing outside pytest."""

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from search.testing.synthetic import build_study

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("SEARCH_BENCH_DB"),
                       reason="benchmark: set SEARCH_BENCH_DB=/path/study.db to run it (first run "
                              "builds 10,000 trials in about 6 minutes)"),
]

TRIALS = 10_000
BUDGET_S = float(os.environ.get("SEARCH_BENCH_BUDGET_S", "15"))

TIMED = """
import sys, time
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from search.analysis import analyze, write_html
started = time.perf_counter()
study = optuna.load_study(study_name="synthetic", storage=sys.argv[1])
result = analyze(study)
result.to_dict()
write_html(result, study, sys.argv[2])
print(f"{time.perf_counter() - started:.2f} {result.importance.method} {len(result.frame)}")
"""


@pytest.fixture(scope="module")
def big_store():
    path = Path(os.environ["SEARCH_BENCH_DB"])
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name="synthetic", storage=url)
        if len(study.get_trials(deepcopy=False)) == TRIALS:
            return url
        raise RuntimeError(f"{path} holds another study: remove it")
    except KeyError:
        pass
    storage = optuna.storages.RDBStorage(url)
    build_study(TRIALS, storage=storage)
    return url


def test_ten_thousand_trials_analyzed_and_reported_in_budget(big_store, tmp_path):
    html = tmp_path / "big.html"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", TIMED, big_store, str(html)], capture_output=True,
                         text=True, timeout=600, check=True)
    seconds, method, trials = out.stdout.split()
    print(f"\n10,000 trials: load + analyze + to_dict + write_html {seconds} s ({method}); "
          f"process {time.perf_counter() - started:.1f} s")
    assert int(trials) == TRIALS and method == "PED-ANOVA"
    assert html.stat().st_size > 3_000_000
    assert float(seconds) < BUDGET_S
