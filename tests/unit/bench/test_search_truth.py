"""bench/search_truth.py: a real study's report against plain Keras, on a tiny study (the space
of search.testing.spaces.SUBSET_SPACE: 4 trials of one epoch, then 2 plain-Keras trainings a
value of the number of classes)."""

import math

import pytest

from bench.search_truth import _bin_edges, _paired, ground_truth


def test_bins_and_paired_differences():
    assert _bin_edges("1e-3..1e-2") == (1e-3, 1e-2)
    assert _bin_edges("adam") is None and _bin_edges(32) is None
    mean, se = _paired([0.9, 0.7, 0.5], [1.0, 0.8, 0.5])
    assert mean == pytest.approx(-0.2 / 3) and se == pytest.approx(math.sqrt(1 / 300) / math.sqrt(3))


def test_the_report_of_a_tiny_study_against_plain_keras(tmp_path):
    from search import api
    from search.testing.studies import new_subset_study

    url = new_subset_study(tmp_path, trials=6)
    api.worker("space", storage=url)
    result = ground_truth(url, "space", ["classes"], samples=2)
    rows = {r["value"]: r for r in result["rows"]}
    assert set(rows) == {4, 10} and all(len(r["scores"]) == 2 for r in rows.values())
    # 4 classes of digits are easier than 10 for the same configurations and seeds
    assert rows[4]["truth_mean"] > rows[10]["truth_mean"]
    assert all(0 <= r["truth_mean"] <= 1 for r in rows.values())
    (factor,) = result["factors"]
    assert factor["param"] == "classes" and factor["truth_best"] == 4
    again = ground_truth(url, "space", ["classes"], samples=2, reuse=result)  # no training: the same scores
    assert [r["scores"] for r in again["rows"]] == [r["scores"] for r in result["rows"]]
