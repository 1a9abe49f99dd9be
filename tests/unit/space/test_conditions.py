"""search.space.conditions: a space's CONDITIONS are swept in turn, trial by trial."""

import pytest

from search.errors import SpaceError
from search.space.conditions import checked, combinations, condition_for


def test_trials_take_the_combinations_in_turn():
    conditions = {"classes": [3, 6, 10], "resize": [8, 16]}
    assert len(combinations(conditions)) == 6
    taken = [condition_for(conditions, n) for n in range(12)]
    assert taken[:6] == combinations(conditions) and taken[6:] == taken[:6]
    assert {tuple(c.items()) for c in taken} == {tuple(c.items()) for c in combinations(conditions)}
    assert condition_for({}, 7) == {}


@pytest.mark.parametrize("bad", [["classes"], {"classes": []}, {"classes": 3}, {1: [2]}])
def test_a_malformed_declaration_is_one_clear_error(bad):
    with pytest.raises(SpaceError, match="CONDITIONS must map hyperparameter names"):
        checked(bad, "space.py")
    assert checked(None, "space.py") == {}


def test_a_condition_fixed_with_set_is_not_swept():
    conditions = {"classes": [3, 6, 10], "resize": [8, 16]}
    taken = [condition_for(conditions, n, fixed={"classes": 10}) for n in range(4)]
    assert taken == [{"resize": 8}, {"resize": 16}, {"resize": 8}, {"resize": 16}]
    assert condition_for({"classes": [3, 6, 10]}, 5, fixed={"classes": 10}) == {}


def test_a_sweep_adds_conditions_and_replaces_the_values_of_the_spaces():
    from search.space.conditions import of_study

    assert of_study({"classes": [3, 6, 10]}, {"resize": [8, 16]}) == {"classes": [3, 6, 10], "resize": [8, 16]}
    assert of_study({"classes": [3, 6, 10]}, {"classes": [3, 10]}) == {"classes": [3, 10]}
    assert of_study({}, {}) == {}
