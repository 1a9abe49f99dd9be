from search.console.format import param_value, significant


def test_measured_amounts_print_by_significance_not_fixed_decimals():
    assert [significant(v) for v in (1966.9679, 34.7769, 3.3031, 0.0123456, 12, None, float("nan"))] == \
        ["1967", "34.8", "3.30", "0.0123", "12", "-", "-"]


def test_hyperparameter_values_print_short():
    assert [param_value(v) for v in (0.0, 0.001, 0.0114, True, "adam", 32)] == \
        ["0", "1e-3", "0.0114", "true", "adam", "32"]
