"""search.execution.runner: what fit() returns becomes the objective and the metrics as Keras
Tuner's convert_to_metrics_dict and validate_trial_results make it."""

import keras
import keras_tuner as kt
import optuna
import pytest

from search.execution.callbacks import TrialCallback
from search.execution.runner import FatalResult, TrialFailed, _score_from_return


def callback(objective="val_accuracy", direction="max"):
    trial = optuna.create_study(direction="maximize").ask()
    return TrialCallback(trial, objective, direction, require_objective=False)


def history(**curves):
    h = keras.callbacks.History()
    h.history = {k: list(v) for k, v in curves.items()}
    return h


def test_a_number_is_the_objective():
    assert _score_from_return(0.25, callback("default_objective", "min"), "default_objective") == \
        (0.25, {"default_objective": 0.25})


def test_a_dict_holds_the_objective_and_every_metric():
    value, metrics = _score_from_return({"metric_a": 0.9, "metric_b": -1}, callback("metric_a"), "metric_a")
    assert value == 0.9 and metrics == {"metric_a": 0.9, "metric_b": -1.0}


def test_a_history_is_scored_by_its_best_epoch():
    value, metrics = _score_from_return(history(val_accuracy=[0.5, 0.8, 0.7], loss=[3, 2, 1]),
                                        callback(), "val_accuracy")
    assert value == 0.8 and metrics == {"val_accuracy": 0.8, "loss": 2.0}


def test_executions_are_averaged():
    value, _ = _score_from_return([{"val_accuracy": 0.6}, {"val_accuracy": 0.8}], callback(), "val_accuracy")
    assert value == pytest.approx(0.7)


def test_a_history_without_the_objective_fails_the_trial_naming_what_it_logs():
    with pytest.raises(TrialFailed, match=r"'val_f1' is not among the metrics the model logs \(accuracy, loss\)"):
        _score_from_return(history(loss=[1.0], accuracy=[0.5]), callback("val_f1"), "val_f1")


@pytest.mark.parametrize("returned, message", [
    ({"metric_b": 1.0}, "fit\\(\\) returned a dict without the objective 'metric_a' \\(keys: metric_b\\)"),
    (None, "fit\\(\\) returned None"),
    ("0.5", "fit\\(\\) returned a str"),
])
def test_results_keras_tuner_rejects_are_fatal(returned, message):
    with pytest.raises(FatalResult, match=message) as raised:
        _score_from_return(returned, callback("metric_a"), "metric_a")
    assert isinstance(raised.value, kt.errors.FatalError)


FAILING_SPACE = '''
import keras
from search import data


def layers_for(hp):
    return keras.layers.Dense(hp.Int("units", -2, -1))  # Keras refuses: the cause is inside Keras


def build_model(hp):
    ds = data.current()
    model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(), layers_for(hp)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
'''


def test_a_failure_keeps_type_message_and_the_spaces_last_frames(tmp_path):
    from search import _datasets
    from search.execution.runner import DETAIL_CHARS, run_trial
    from search.options import StudyConfig
    from search.space.loader import load_space

    path = tmp_path / "failing.py"
    path.write_text(FAILING_SPACE)
    space = load_space(str(path))
    trial = optuna.create_study().ask()
    outcome = run_trial(trial, space, _datasets.load("digits"), StudyConfig(str(path), "digits", epochs=1))
    reason, detail = outcome.attrs["fail_reason"], outcome.attrs["fail_detail"]
    assert reason.startswith("build: ValueError: ") and "\n" not in reason  # the tables' line
    assert detail.startswith("ValueError: ") and "units" in detail
    assert f'File "{path}", line 7, in layers_for' in detail  # the user's frames, innermost last
    assert f'File "{path}", line 12, in build_model' in detail
    assert len(detail) <= DETAIL_CHARS + 4


def test_a_long_multi_line_message_is_kept_whole_up_to_its_bound():
    from search.execution.runner import DETAIL_MESSAGE_CHARS, failure_detail

    def deep():
        raise RuntimeError("Exception encountered when calling layer\n" + "the real cause: " + "x" * 5000)

    try:
        deep()
    except RuntimeError as exc:
        detail = failure_detail(exc, "/nowhere/space.py")
    message, _, frames = detail.partition("\n  File ")
    assert "the real cause: xxx" in message and message.endswith(" ...")
    assert len(message) <= DETAIL_MESSAGE_CHARS + 4
    assert "in deep" in frames  # no frame of the space: the deepest frames instead


def test_derived_seeds_stay_in_the_range_numpy_takes():
    """The largest --seed, a process id as the worker's slot: the seeds of the trials and of the
    workers' samplers are still seeds NumPy (so Keras and Optuna) takes, distinct per trial."""
    import numpy as np

    from search.execution.runner import trial_seed
    from search.options import MAX_SEED
    from search.space.samplers import make_sampler, worker_seed

    seeds = [trial_seed(MAX_SEED, number) for number in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s <= MAX_SEED for s in seeds)
    assert trial_seed(0, 7) == 7 and worker_seed(3, 2) == 3002  # small seeds as before: studies resume alike
    keras.utils.set_random_seed(max(seeds))
    np.random.seed(worker_seed(MAX_SEED, 4_194_304))  # the largest Linux pid
    make_sampler("tpe", worker_seed(MAX_SEED, 4_194_304))
