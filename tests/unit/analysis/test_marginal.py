"""search.analysis.marginal and the effect rows built on it: pruned trials count, intervals stay in
the metric's range, verdicts name the factor that matters (studies with a known answer, no training)."""

import io

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from rich.console import Console

from search.analysis import analyze
from search.console.analysis import effect_cells, render_text
from search.testing.synthetic import epoch_times

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS = 6
# the final accuracy of each optimizer; "adagrad" learns slowly and is always pruned after 1 epoch
FINAL = {"adam": 0.95, "sgd": 0.90, "adagrad": 0.30}
DISTRIBUTIONS = {"optimizer": CategoricalDistribution(list(FINAL)),
                 "batch_size": CategoricalDistribution([16, 64, 256])}


def trial(optimizer, batch_size, rng):
    final = FINAL[optimizer] + rng.normal(0, 0.01)
    epochs = 1 if optimizer == "adagrad" else EPOCHS
    curve = [float(np.clip(final * (1 - 0.5 ** (e + 1)) / (1 - 0.5 ** EPOCHS), 0, 1))
             for e in range(epochs)]
    hp = {"optimizer": optimizer, "batch_size": batch_size}
    return optuna.create_trial(
        state=TrialState.PRUNED if epochs < EPOCHS else TrialState.COMPLETE, value=max(curve),
        params=hp, distributions=DISTRIBUTIONS, intermediate_values=dict(enumerate(curve)),
        user_attrs={"hp_values": hp, "history": {"val_accuracy": curve}, "epochs": epochs,
                    "best_epoch": int(np.argmax(curve)), "epoch_times": epoch_times(batch_size, epochs)})


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="maximize")
    study.add_trials([trial(o, b, rng) for _ in range(4) for o in FINAL for b in (16, 64, 256)])
    return analyze(study)


def test_a_value_whose_trials_were_all_pruned_still_gets_a_mean_and_a_verdict(result):
    rows = result.effect("optimizer").rows.set_index("value")
    assert rows.loc["adagrad", "complete"] == 0 and rows.loc["adagrad", "pruned"] == 12
    assert np.isnan(rows.loc["adagrad", "mean"])           # no completed trial: no plain mean
    assert rows.loc["adagrad", "reached_epoch"] == 1 and rows.loc["adam", "reached_epoch"] == EPOCHS
    # extrapolated to the last epoch: the interval also spans its mean where it stopped
    assert rows.loc["adagrad", "model_low"] < FINAL["adagrad"] < rows.loc["adagrad", "model_high"]
    assert rows.loc["adagrad", "row_verdict"] == "hurts"
    assert rows.loc["adam", "row_verdict"] == "helps"
    verdict = result.effect("optimizer").verdict
    assert verdict.startswith("optimizer: best adam") and "worse: " in verdict
    assert "adagrad (" in verdict.split("worse: ")[1] and "sgd (" in verdict.split("worse: ")[1]


def test_intervals_stay_inside_the_metric_range_and_hold_the_estimate(result):
    for effect in result.effects:
        rows = effect.rows
        assert (rows["model_low"] >= 0).all() and (rows["model_high"] <= 1).all()
        assert (rows["model_low"] <= rows["model_mean"] + 1e-9).all()
        assert (rows["model_mean"] <= rows["model_high"] + 1e-9).all()


def test_a_factor_without_an_effect_is_no_effect_detected(result):
    assert result.effect("batch_size").verdict.startswith("batch_size: no effect detected")


def test_time_per_epoch_leaves_the_compiling_first_epoch_apart(result):
    rows = result.effect("batch_size").rows.set_index("value")
    # synthetic steady epoch: 0.5 + 64 / batch seconds; the first one compiles for 5 s more
    for batch in (16, 64, 256):
        assert rows.loc[batch, "sec_per_epoch"] == pytest.approx(0.5 + 64 / batch)
        assert rows.loc[batch, "first_epoch_s"] == pytest.approx(5.5 + 64 / batch)
    assert rows["ms_per_step"].is_monotonic_increasing     # larger batches: slower steps


@pytest.mark.parametrize("width", [60, 80, 120, 250])
def test_text_never_cuts_a_number_at_any_width(result, width):
    out = io.StringIO()
    render_text(result, Console(file=out, width=width))
    text = out.getvalue()
    assert "…" not in text
    for effect in result.effects:
        for cell in (c for row in effect_cells(effect) for c in row):
            for word in cell.split():  # words may wrap onto the next line; never cut
                assert word in text


def test_a_swept_condition_is_reported_per_value_at_its_best_and_across_its_trials():
    rng = np.random.default_rng(1)
    trials = []
    for _ in range(3):
        for o in FINAL:
            for b in (16, 64, 256):
                t = trial(o, b, rng)
                t.user_attrs["condition"] = {"batch_size": b}
                trials.append(t)
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    result = analyze(study)
    (condition,) = result.conditions
    assert condition.name == "batch_size" and result.effect("batch_size").kind == "condition, swept"
    rows = condition.rows.set_index("value")
    for b in (16, 64, 256):
        mine = [t for t in study.trials if t.params["batch_size"] == b and t.state == TrialState.COMPLETE]
        best = max(mine, key=lambda t: t.value)
        assert rows.loc[b, "best"] == pytest.approx(best.value) and rows.loc[b, "best_trial"] == best.number
        assert rows.loc[b, "mean"] == pytest.approx(np.mean([t.value for t in mine]))
        assert condition.best_params[str(b)]["optimizer"] == best.params["optimizer"]
    out = io.StringIO()
    render_text(result, Console(file=out, width=100))
    assert "Condition batch_size" in out.getvalue()
    assert result.to_dict()["conditions"][0]["name"] == "batch_size"


def test_the_models_time_per_epoch_follows_the_batch_size(result):
    rows = result.effect("batch_size").rows.set_index("value")
    for batch in (16, 64, 256):  # every trial of a batch size has the same steady epoch time
        assert rows.loc[batch, "sec_per_epoch_model"] == pytest.approx(0.5 + 64 / batch, rel=0.05)


def _two_factor_study(effect: float, seed: int, n_trials: int = 24):
    """Trials of a 4-valued factor ``a`` whose values move accuracy by 0, effect/3, 2*effect/3
    and effect, and a null ``b``; noise sd 0.05, every trial complete."""
    rng = np.random.default_rng(seed)
    dist = {"a": CategoricalDistribution([0, 1, 2, 3]), "b": CategoricalDistribution(["x", "y"])}
    study = optuna.create_study(direction="maximize")
    for _ in range(n_trials):
        hp = {"a": int(rng.integers(4)), "b": ["x", "y"][int(rng.integers(2))]}
        value = float(np.clip(0.6 + effect * hp["a"] / 3 + rng.normal(0, 0.05), 0, 1))
        study.add_trial(optuna.create_trial(
            state=TrialState.COMPLETE, value=value, params=hp, distributions=dist,
            user_attrs={"hp_values": hp, "history": {"val_accuracy": [value]}, "epochs": 1,
                        "best_epoch": 0}))
    return analyze(study)


def test_the_factor_test_names_a_factor_the_per_value_comparisons_miss():
    # a moderate graded effect over 24 trials: no single value is apart from the best at 95% for
    # all four together, but the factor as a whole matters, and its best value is the top one
    result = _two_factor_study(0.05, seed=3)
    a = result.effect("a")
    assert a.factor_p is not None and a.factor_p < 0.05, a.verdict
    assert a.verdict.startswith("a: matters (permutation p=") and "best 3 (" in a.verdict, a.verdict
    assert "no single value clearly worse than it" in a.verdict
    assert result.to_dict()["parameters"][[p["name"] for p in result.to_dict()["parameters"]].index("a")][
        "factor_p"] == a.factor_p


def test_the_factor_test_holds_its_level_on_a_null_factor():
    nulls = [_two_factor_study(0.0, seed=s) for s in range(20)]
    p_values = [r.effect(name).factor_p for r in nulls for name in ("a", "b")]
    assert sum(p < 0.05 for p in p_values) <= 4, p_values  # 5% of 40 is 2; binomial room to 4
    # values are compared only within a factor that matters: a null's verdict follows its test
    for r in nulls:
        for name in ("a", "b"):
            e = r.effect(name)
            assert e.verdict.startswith(f"{name}: no effect detected") == (e.factor_p >= 0.05), e.verdict
