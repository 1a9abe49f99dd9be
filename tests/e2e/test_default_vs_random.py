"""Issue 16's regression check: on the recorded learning curves (bench/results/learning_curves.jsonl.gz),
the service's default search (``search start``'s sampler and pruner) reaches the grid's top value
with less compute than random search, paired over 20 seeds (bench/default_vs_random.py, which
replays through the service's own sampler, pruner and trial callback). A change that loses that
efficiency fails here. Measured on the cnn grid, where it holds; on the mlp grid the default's lead
is not significant (bench/README.md, section 5), so it is not asserted there."""

import gc

import pytest

from bench import curves, default_vs_random

pytestmark = pytest.mark.slow


def test_the_default_reaches_the_cnn_grids_top_value_with_less_compute_than_random_search(tmp_path):
    table = curves.Table.load(curves.TABLE)
    if not any(table.complete("cnn", s) for s in table.seeds("cnn")):
        pytest.skip("the cnn grid of the recorded table is not complete")
    gc.collect()
    gc.freeze()  # the replay's trials call gc.collect() (clear_session): the loaded heap stays out
    try:
        row, = default_vs_random.compare("cnn", 20, [30], curves.TABLE, tmp_path)
    finally:
        gc.unfreeze()
    reach = row["reach"]
    print(f"cnn, 30 trials' compute, 20 seeds: epochs to {row['target']:.4f}: default median "
          f"{row['default_reach']:.0f}, random {row['random_reach']:.0f}; wins {reach['default_wins']}/"
          f"{reach['random_wins']}/{reach['ties']}, p = {reach['p']:.4f}")
    assert reach["p"] < 0.05, row
    assert row["default_reached"] >= row["random_reached"], row
    assert row["best"]["mean"] >= 0, row  # and no lower a best at that compute, on average
