"""search.analysis.scales: the rows of an effect table and each trial's row."""

import pandas as pd

from search.analysis.scales import Scale, group_keys


def test_a_trial_keys_its_row_by_the_choice_itself():
    # a column with missing values is a float column: the choice 32 reads 32.0
    values = pd.Series([32.0, 16.0, None, 32.0]).dropna()
    keys, rows = group_keys(values, Scale("batch_size", categorical=True, choices=[16, 32, 64]))
    assert rows == [16, 32]
    assert [repr(k) for k in keys] == ["32", "16", "32"]
