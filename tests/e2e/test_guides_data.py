"""The Keras Tuner guides' code on the guides' data, through `search start`: the regression
section (float targets, `y = np.random.rand(n, 1)`) trains on its real targets and minimises
`val_mean_absolute_error`, or the float its fit() returns; a module that only defines the guides'
`build_model(hp)` runs, and says in one line that its model does not rescale uint8 pixels."""

import numpy as np
import optuna
import pytest

from search import _datasets
from search.testing.cli import run_cli
from search.testing.kt_guides import PATTERNS, build_model_source, regression_data

pytestmark = pytest.mark.slow


@pytest.fixture
def regression_npz(tmp_path):
    """The guides' random data as an .npz a user passes with --data: the training arrays and the
    guide's validation arrays as the test split (search carves its validation split itself)."""
    (x, y), (x_other, y_other) = regression_data()
    path = tmp_path / "regression.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x_other, y_test=y_other)
    return str(path)


def best_constant_mae(y: np.ndarray) -> float:
    """The validation MAE of the best prediction that ignores the inputs (the median): on the
    guides' data the inputs are independent noise, so no trained model does much better."""
    return float(np.mean(np.abs(y - np.median(y))))


@pytest.mark.parametrize("name, objective", [
    ("regression", "val_mean_absolute_error"),  # the metric, its direction inferred: min
    ("fit_returns_float", "default_objective"),  # fit() returns the MAE: Keras Tuner minimises it
])
def test_the_guides_regression_trains_on_its_real_float_targets(name, objective, tmp_path, store_url,
                                                                regression_npz):
    space = tmp_path / f"{name}.py"
    space.write_text(PATTERNS[name].space_source())
    named = ["--objective", objective] if name == "regression" else []
    result = run_cli("start", str(space), "--storage", store_url, "--data", regression_npz,
                     "--trials", "2", "--epochs", "2", *named)
    assert result.returncode == 0, result.stderr[-2000:]
    study = optuna.load_study(study_name=name, storage=store_url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"], \
        [t.user_attrs.get("fail_reason") for t in study.trials]
    data = _datasets.load(regression_npz, 0)  # the study's splits (seed 0), as every worker makes them
    assert data.y_val.dtype == np.float64 and data.y_val.shape[1:] == (1,)
    floor = best_constant_mae(data.y_val)  # about 0.25 for targets uniform on [0, 1]
    for t in study.trials:
        assert t.user_attrs["metrics"][objective] == pytest.approx(t.value)
        # Targets cast to integers (all 0, the old bug) would let the model score near 0.
        assert 0.8 * floor < t.value < 1.0, (t.value, floor)


def test_a_module_defining_only_build_model_runs(tmp_path, store_url):
    space = tmp_path / "guide.py"
    space.write_text(build_model_source())
    result = run_cli("start", str(space), "--storage", store_url, "--trials", "2", "--epochs", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    # The guide's model does not rescale the digits' uint8 pixels: said once, as one line.
    said = " ".join(result.stdout.split())  # a note wraps at the terminal's width
    assert said.count("note: digits: the inputs are uint8 pixels 0..255") == 1
    assert "add keras.layers.Rescaling(1 / 255)" in said
    study = optuna.load_study(study_name="guide", storage=store_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert {"units", "activation", "dropout", "lr"} <= set(study.trials[0].user_attrs["hp_values"])
