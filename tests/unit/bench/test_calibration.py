"""bench/calibration.py on a few synthetic studies: the intervals cover the known effects, the
verdicts get the sign of large effects right and read a true null as no effect detected."""

from bench.calibration import calibrate


def test_effects_are_calibrated_on_a_few_synthetic_studies():
    result = calibrate(studies=8)
    assert 0 < result["pruned_share"] < 0.5      # pruned trials are in the model
    assert result["coverage"] >= 0.85
    assert result["sign_right"] >= 0.95 and result["called_right"] >= 0.9
    assert result["null_no_effect"] >= 0.75
