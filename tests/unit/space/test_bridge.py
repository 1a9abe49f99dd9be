"""The Keras Tuner <-> Optuna bridge, checked against the distributions Optuna records."""

import warnings

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search.errors import SpaceError
from search.space.bridge import (
    REVERSE_LOG_SUFFIX,
    TrialHyperParameters,
    to_optuna_params,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def new_trial(**enqueue):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    if enqueue:
        study.enqueue_trial(enqueue)
    return study, study.ask()


def test_numeric_kinds_map_to_optunas_distributions():
    _, trial = new_trial()
    hp = TrialHyperParameters(trial)
    units = hp.Int("units", 16, 128, step=16)
    depth_log = hp.Int("depth", 1, 64, sampling="log")
    filters = hp.Int("filters", 8, 64, step=2, sampling="log")
    rate = hp.Float("rate", 0.0, 0.5)
    dropout = hp.Float("dropout", 0.0, 0.5, step=0.1)
    lr = hp.Float("lr", 1e-5, 1e-1, sampling="log")
    d = trial.distributions
    assert d["units"] == IntDistribution(16, 128, step=16) and units in range(16, 129, 16)
    assert d["depth"] == IntDistribution(1, 64, log=True) and 1 <= depth_log <= 64
    assert d["filters"] == CategoricalDistribution((8, 16, 32, 64)) and filters in (8, 16, 32, 64)
    assert d["rate"] == FloatDistribution(0.0, 0.5) and 0.0 <= rate <= 0.5
    assert d["dropout"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert round(dropout * 10) == pytest.approx(dropout * 10)
    assert d["lr"] == FloatDistribution(1e-5, 1e-1, log=True) and 1e-5 <= lr <= 1e-1
    assert hp.values == {"units": units, "depth": depth_log, "filters": filters, "rate": rate,
                         "dropout": dropout, "lr": lr}



def test_a_stepped_float_range_ends_exactly_at_its_maximum():
    # 0 + 19 * 0.05 is 0.9500000000000001 in floating point; Optuna would warn on every trial
    _, trial = new_trial()
    hp = TrialHyperParameters(trial)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        momentum = hp.Float("momentum", 0.0, 0.95, step=0.05)
    assert trial.distributions["momentum"] == FloatDistribution(0.0, 0.95, step=0.05)
    assert 0.0 <= momentum <= 0.95

def test_reverse_log_samples_u_and_converts_with_keras_tuner():
    _, trial = new_trial()
    hp = TrialHyperParameters(trial)
    value = hp.Float("momentum", 0.5, 0.999, sampling="reverse_log")
    name = "momentum" + REVERSE_LOG_SUFFIX
    assert trial.distributions[name] == FloatDistribution(0.0, 1.0)
    assert "momentum" not in trial.distributions
    kt_hp = hp._hps["momentum"][0]
    assert value == pytest.approx(kt_hp.prob_to_value(trial.params[name]))
    assert 0.5 <= value <= 0.999


def test_reverse_log_value_used_is_in_trials_dataframe():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    used = []
    for _ in range(3):
        trial = study.ask()
        used.append(TrialHyperParameters(trial).Float("momentum", 0.5, 0.999, sampling="reverse_log"))
        study.tell(trial, 0.0)
    frame = study.trials_dataframe()
    assert frame["user_attrs_hp.momentum"].tolist() == used
    assert frame["params_momentum" + REVERSE_LOG_SUFFIX].tolist() != used  # Optuna's own variable


def test_choice_boolean_and_fixed():
    _, trial = new_trial()
    hp = TrialHyperParameters(trial)
    opt = hp.Choice("optimizer", ["adam", "sgd"])
    batch = hp.Choice("batch_size", [16, 32, 64], ordered=True)
    scale = hp.Choice("scale", [0.5, 1.0])
    flip = hp.Choice("flip", [True, False])
    bn = hp.Boolean("batch_norm")
    fixed = hp.Fixed("classes", 20)
    d = trial.distributions
    assert d["optimizer"] == CategoricalDistribution(("adam", "sgd")) and opt in ("adam", "sgd")
    assert d["batch_size"] == CategoricalDistribution((16, 32, 64)) and batch in (16, 32, 64)
    assert d["scale"] == CategoricalDistribution((0.5, 1.0)) and scale in (0.5, 1.0)
    assert d["flip"] == CategoricalDistribution((False, True)) and type(flip) is bool
    assert d["batch_norm"] == CategoricalDistribution((False, True)) and type(bn) is bool
    assert "classes" not in d and fixed == 20 and hp.values["classes"] == 20


@pytest.mark.parametrize("parent", ["sgd", "adam"])
def test_conditional_parameters_are_suggested_only_when_active(parent):
    _, trial = new_trial()
    hp = TrialHyperParameters(trial, fixed={"optimizer": parent})
    hp.Choice("optimizer", ["adam", "sgd"])
    with hp.conditional_scope("optimizer", ["sgd"]):
        momentum = hp.Float("momentum", 0.0, 0.9)
    nesterov = hp.Boolean("nesterov", parent_name="optimizer", parent_values=["sgd"])
    if parent == "sgd":
        assert {"momentum", "nesterov"} <= set(trial.distributions) and momentum is not None
    else:
        assert momentum is None and nesterov is None
        assert "momentum" not in trial.distributions and "nesterov" not in trial.distributions
    assert "optimizer" not in trial.distributions  # fixed by --set


def test_each_parameter_is_suggested_once():
    _, trial = new_trial()
    hp = TrialHyperParameters(trial)
    first = hp.Float("lr", 1e-4, 1e-1, sampling="log")
    assert hp.Float("lr", 1e-4, 1e-1, sampling="log") == first
    assert list(trial.distributions) == ["lr"]


@pytest.mark.parametrize("define, raw, expected", [
    (lambda hp: hp.Choice("batch_size", [16, 32]), "32", 32),
    (lambda hp: hp.Float("lr", 1e-4, 1e-1, sampling="log"), "0.01", 0.01),
    (lambda hp: hp.Boolean("bn"), "true", True),
    (lambda hp: hp.Int("units", 16, 64, step=16), "48", 48),
])
def test_set_values_are_coerced_and_not_suggested(define, raw, expected):
    _, trial = new_trial()
    hp = TrialHyperParameters(trial, fixed={"batch_size": raw, "lr": raw, "bn": raw, "units": raw})
    value = define(hp)
    assert value == expected and type(value) is type(expected)
    assert trial.distributions == {}


@pytest.mark.parametrize("define, raw", [
    (lambda hp: hp.Choice("batch_size", [16, 32]), "48"),
    (lambda hp: hp.Float("lr", 1e-4, 1e-1, sampling="log"), "1.5"),
    (lambda hp: hp.Boolean("bn"), "maybe"),
    (lambda hp: hp.Int("units", 16, 64, step=16), "many"),
])
def test_set_values_outside_the_space_are_errors(define, raw):
    _, trial = new_trial()
    hp = TrialHyperParameters(trial, fixed={"batch_size": raw, "lr": raw, "bn": raw, "units": raw})
    with pytest.raises(SpaceError) as err:
        define(hp)
    assert "\n" not in str(err.value) and "--set" in str(err.value)


def define_space(hp):
    hp.Choice("optimizer", ["adam", "sgd"], default="sgd")
    hp.Int("units", 16, 64, step=16, default=32)
    hp.Float("lr", 1e-4, 1e-1, sampling="log", default=1e-3)
    hp.Float("beta", 0.5, 0.999, sampling="reverse_log", default=0.9)
    hp.Boolean("bn", default=True)


def test_defaults_without_a_trial_and_enqueued_round_trip():
    defaults = TrialHyperParameters()
    define_space(defaults)
    assert defaults.values == {"optimizer": "sgd", "units": 32, "lr": 1e-3, "beta": 0.9, "bn": True}
    params = to_optuna_params(defaults, defaults.values)
    _, trial = new_trial(**params)
    hp = TrialHyperParameters(trial)
    define_space(hp)
    assert hp.values == pytest.approx(defaults.values)
