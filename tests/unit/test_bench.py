"""The benchmarks' helpers (bench/): percentiles, best-so-far curves, epochs to reach a target
(the scripts run end to end: tests/e2e/test_bench.py)."""

import math

from bench import common, efficiency


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
