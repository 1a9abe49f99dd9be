"""ablation.plan: exactly the expected one-factor-at-a-time configurations (the analysis of the
ablation trials: tests/unit/analysis/test_ablation_effects.py)."""

import keras_tuner as kt
import optuna
import pytest
from keras_tuner.engine.hyperparameters import Boolean, Choice, Float, Int

from search.errors import SearchError
from search.space import ablation

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def space():
    hp = kt.HyperParameters()
    hp.Float("lr", 1e-5, 1e-1, sampling="log")
    hp.Choice("optimizer", ["adam", "sgd", "rmsprop"])
    with hp.conditional_scope("optimizer", ["sgd"]):
        hp.Float("momentum", 0.0, 0.9, default=0.5)
    hp.Boolean("batch_norm")
    hp.Int("units", 32, 256, step=32)
    hp.Float("dropout", 0.0, 0.5, step=0.1)
    hp.Int("batch_size", 8, 512, step=2, sampling="log")
    hp.Fixed("epochs_hint", 3)
    return hp


BEST = {"lr": 3e-4, "optimizer": "adam", "batch_norm": True, "units": 64, "dropout": 0.2,
        "batch_size": 32, "epochs_hint": 3}


def test_grids():
    lr = Float("lr", 1e-5, 1e-1, sampling="log")
    assert ablation.grid(lr) == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    assert ablation.grid(lr, 3e-4) == pytest.approx([1e-5, 1e-4, 3e-4, 1e-3, 1e-2, 1e-1])
    assert ablation.grid(Float("d", 0.0, 0.5, step=0.1)) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert ablation.grid(Float("m", 0.0, 0.8)) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    units = ablation.grid(Int("units", 32, 256, step=32))
    assert len(units) == 5 and units[0] == 32 and units[-1] == 256 and all(u % 32 == 0 for u in units)
    assert ablation.grid(Int("bs", 8, 512, step=2, sampling="log")) == [8, 16, 32, 64, 128, 256, 512]
    assert ablation.grid(Int("layers", 1, 4)) == [1, 2, 3, 4]
    assert ablation.grid(Boolean("bn")) == [False, True]
    assert ablation.grid(Choice("o", ["a", "b"]), "a") == ["a", "b"]


def test_plan_enqueues_exactly_the_expected_configurations(space):
    params, repeats = ["lr", "optimizer", "batch_norm", "units"], 3
    trials = ablation.plan(BEST, space, params, repeats)
    # lr: 5 decades + the best 3e-4; optimizer 3 and SGD without momentum; batch_norm 2; units: 5
    # of its 8 steps + the best 64
    expected_values = {
        "lr": [1e-5, 1e-4, 3e-4, 1e-3, 1e-2, 1e-1],
        "optimizer": ["adam", "sgd", "sgd, momentum=0", "rmsprop"],
        "batch_norm": [False, True],
        "units": [32, 64, 96, 160, 192, 256],
    }
    assert len(trials) == (6 + 4 + 2 + 6) * repeats
    for name, values in expected_values.items():
        mine = [t for t in trials if t["ablation"]["param"] == name]
        assert [t["ablation"]["value"] for t in mine] == pytest.approx(
            [v for v in values for _ in range(repeats)])
        assert [t["ablation"]["repeat"] for t in mine] == list(range(repeats)) * len(values)
        for t in mine:
            others = {k: v for k, v in t["params"].items() if k not in (name, "momentum")}
            assert others == {k: v for k, v in BEST.items() if k != name}
            if t["ablation"]["value"] == "sgd, momentum=0":  # plain SGD
                assert t["params"][name] == "sgd" and t["params"]["momentum"] == 0.0
            else:
                assert t["params"][name] == t["ablation"]["value"]
            assert t["ablation"]["center"] == BEST[name]


def test_plan_follows_conditional_scopes(space):
    trials = ablation.plan(BEST, space, ["optimizer"], 1)
    by_value = {t["ablation"]["value"]: t["params"] for t in trials}
    assert by_value["sgd"]["momentum"] == 0.5          # activated: the space's default
    assert "momentum" not in by_value["adam"]
    best_sgd = {**BEST, "optimizer": "sgd", "momentum": 0.8}
    trials = ablation.plan(best_sgd, space, ["optimizer"], 1)
    by_value = {t["ablation"]["value"]: t["params"] for t in trials}
    assert by_value["sgd"]["momentum"] == 0.8 and "momentum" not in by_value["rmsprop"]
    assert by_value["sgd, momentum=0"] == {**by_value["sgd"], "momentum": 0.0}


def test_plan_rejects_bad_requests(space):
    with pytest.raises(SearchError, match="unknown parameter"):
        ablation.plan(BEST, space, ["nope"], 2)
    with pytest.raises(SearchError, match="fixed"):
        ablation.plan(BEST, space, ["epochs_hint"], 2)
    with pytest.raises(SearchError, match="not active"):
        ablation.plan(BEST, space, ["momentum"], 2)
    with pytest.raises(SearchError, match="repeats"):
        ablation.plan(BEST, space, ["lr"], 0)


def test_a_plan_beyond_the_room_left_is_refused_before_it_is_listed(space):
    from search.options import MAX_TRIALS

    # 6 lr values x 10**12 repeats: refused at once (listing them first would take the memory)
    with pytest.raises(SearchError, match=r"--repeats 1000000000000 queues 6000000000000 trials \(6 "
                                          r"configurations x 1000000000000\): the study has room for "
                                          rf"{MAX_TRIALS - 10} more"):
        ablation.plan(BEST, space, ["lr"], 10**12, room=MAX_TRIALS - 10)
    assert len(ablation.plan(BEST, space, ["lr"], 2, room=12)) == 12  # exactly the room: planned
    with pytest.raises(SearchError, match="room for 11 more"):
        ablation.plan(BEST, space, ["lr"], 2, room=11)


def test_one_ablation_queues_a_bounded_number_of_trials(space):
    # within the store's room, but a million repeats would be millions of rows (and gigabytes)
    with pytest.raises(SearchError, match=rf"--repeats 1000000 queues 6000000 trials \(6 configurations "
                                          rf"x 1000000\): one ablation queues at most {ablation.MAX_QUEUED}; "
                                          "lower --repeats or name fewer --params"):
        ablation.plan(BEST, space, ["lr"], 10**6, room=10**9)
    assert len(ablation.plan(BEST, space, ["lr"], ablation.MAX_QUEUED // 6)) == 6 * (ablation.MAX_QUEUED // 6)


def test_an_interaction_crosses_the_first_two_parameters_after_the_one_factor_trials(space):
    one_factor = ablation.plan(BEST, space, ["optimizer", "lr"], repeats=2)
    plan = ablation.plan(BEST, space, ["optimizer", "lr"], repeats=2, interaction=True)
    assert plan[:len(one_factor)] == one_factor
    crossed = plan[len(one_factor):]
    by_name = {hp.name: hp for hp in space.space}
    optimizers, rates = ablation.grid(by_name["optimizer"]), ablation.grid(by_name["lr"], BEST["lr"])
    assert len(crossed) == len(optimizers) * len(rates) * 2
    assert {e["ablation"]["param"] for e in crossed} == {"optimizer x lr"}
    assert all(e["ablation"]["pair"] == ["optimizer", "lr"] and e["ablation"]["center"] == ["adam", 3e-4]
               for e in crossed)
    cells = {(e["ablation"]["value"][0], e["ablation"]["value"][1]) for e in crossed}
    assert cells == {(o, r) for o in optimizers for r in rates}
    for entry in crossed:  # each cell is the best configuration with the two set, scopes followed
        o, r = entry["ablation"]["value"]
        assert entry["params"]["optimizer"] == o and entry["params"]["lr"] == r
        assert ("momentum" in entry["params"]) == (o == "sgd")
        assert entry["params"]["units"] == BEST["units"]
    with pytest.raises(SearchError, match="--interaction crosses two parameters"):
        ablation.plan(BEST, space, ["lr"], repeats=2, interaction=True)
