"""Issue 16's regression check: on the recorded learning curves (bench/results/learning_curves.jsonl.gz),
the service's default search (``search start``'s sampler and pruner) against random search, paired
over 20 seeds (bench/default_vs_random.py, which replays through the service's own sampler, pruner
and trial callback).

On the complete table (both recorded seeds of both grids) the default does not reach the cnn grid's
top value with less compute than random search (p = 0.30, bench/README.md section 5), as it did on
the first recorded seed alone (p = 0.008). What still holds is checked: at 30 trials' compute on the
cnn grid the default's best is no lower on average and reaches the top in as many seeds. The
claim the issue asks for (less compute at p < 0.05) is kept as a strict expected failure: the day a
default wins it, the test says so and the check becomes the assertion."""

import gc

import pytest

from bench import curves, default_vs_random

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cnn_row(tmp_path_factory):
    table = curves.Table.load(curves.TABLE)
    if not any(table.complete("cnn", s) for s in table.seeds("cnn")):
        pytest.skip("the cnn grid of the recorded table is not complete")
    gc.collect()
    gc.freeze()  # the replay's trials call gc.collect() (clear_session): the loaded heap stays out
    try:
        row, = default_vs_random.compare("cnn", 20, [30], curves.TABLE, tmp_path_factory.mktemp("r"))
    finally:
        gc.unfreeze()
    reach = row["reach"]
    print(f"cnn, 30 trials' compute, 20 seeds: epochs to {row['target']:.4f}: default median "
          f"{row['default_reach']:.0f}, random {row['random_reach']:.0f}; wins {reach['default_wins']}/"
          f"{reach['random_wins']}/{reach['ties']}, p = {reach['p']:.4f}")
    return row


def test_the_default_is_no_worse_than_random_search_on_the_cnn_grid(cnn_row):
    assert cnn_row["best"]["mean"] >= 0, cnn_row  # no lower a best at that compute, on average
    assert cnn_row["default_reached"] >= cnn_row["random_reached"], cnn_row


@pytest.mark.xfail(strict=True, reason="on the complete table the default (TPE + median) reaches "
                   "the cnn grid's top no sooner than random search (p = 0.30): issue 16 item 4")
def test_the_default_reaches_the_cnn_grids_top_value_with_less_compute_than_random_search(cnn_row):
    assert cnn_row["reach"]["p"] < 0.05, cnn_row
