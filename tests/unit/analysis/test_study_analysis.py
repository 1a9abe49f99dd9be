"""Analysis of synthetic studies with a known structure (no training): learning_rate (log) and
classes matter, batch_size does not, learning rates of 1e-2 and above mostly diverge."""

import io
import json

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from rich.console import Console

from search.analysis import analyze, trials_frame
from search.console.analysis import render_text
from search.errors import SearchError
from search.testing.synthetic import build_study, space_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def study():
    return build_study(250, seed=0, running=2)


@pytest.fixture(scope="module")
def result(study):
    return analyze(study, "val_accuracy", space=space_config(), budget=400)


def test_overview_counts_states_budget_and_best(study, result):
    trials = study.get_trials(deepcopy=False)
    overview = result.overview
    assert overview["trials"] == 252
    assert overview["states"]["RUNNING"] == 2
    assert sum(overview["states"].values()) == 252
    assert overview["finished"] == 250
    assert overview["budget_used"] == pytest.approx(250 / 400)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    assert overview["best"]["number"] == best.number
    assert overview["best"]["params"] == best.user_attrs["hp_values"]
    assert overview["train_seconds"] == pytest.approx(
        sum(t.user_attrs.get("train_seconds", 0) for t in trials))
    assert overview["baseline"]["number"] == 0
    assert all(reason.startswith("diverged") for reason in overview["failure_reasons"])


def test_learning_rate_table_is_per_decade_with_failures_counted(study, result):
    effect = result.effect("learning_rate")
    assert effect.kind == "log-binned"
    rows = effect.rows.set_index("value")
    assert list(rows.index) == ["1e-5..1e-4", "1e-4..1e-3", "1e-3..1e-2", "1e-2..1e-1"]
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.RUNNING]
    in_top = [t for t in trials if t.user_attrs["hp_values"]["learning_rate"] >= 1e-2]
    assert rows.loc["1e-2..1e-1", "trials"] == len(in_top)
    assert rows.loc["1e-2..1e-1", "failed"] == sum(t.state == TrialState.FAIL for t in in_top)
    assert rows.loc["1e-2..1e-1", "diverged"] == rows.loc["1e-2..1e-1", "failed"]
    assert rows["failed"].iloc[:3].sum() == 0
    assert rows["trials"].sum() == len(trials)
    # the mean, its interval and the best of one row, recomputed from the trials
    done = [t.value for t in trials if t.state == TrialState.COMPLETE
            and 1e-4 <= t.user_attrs["hp_values"]["learning_rate"] < 1e-3]
    row = rows.loc["1e-4..1e-3"]
    assert row["complete"] == len(done)
    assert row["mean"] == pytest.approx(sum(done) / len(done))
    assert row["best"] == pytest.approx(max(done))
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert row["median"] == pytest.approx(pd.Series(done).median())


def test_verdicts_say_what_matters(result):
    lr = result.effect("learning_rate").verdict
    assert lr.startswith("learning_rate: best 1e-4..1e-3")
    assert "worse: 1e-5..1e-4" in lr
    assert "1e-2 and above diverge in" in lr
    classes = result.effect("classes").verdict
    assert classes.startswith("classes: best 10")
    assert "100 (" in classes.split("worse:")[1] and "50 (" in classes.split("worse:")[1]
    assert result.effect("batch_size").verdict.startswith("batch_size: no effect detected")


def test_seconds_per_epoch_and_gap_columns(result):
    rows = result.effect("batch_size").rows.set_index("value")
    # the synthetic epoch takes 0.5 + 2 * 32 / batch_size seconds
    for batch_size in (32, 64, 128, 256):
        assert rows.loc[batch_size, "sec_per_epoch"] == pytest.approx(0.5 + 64 / batch_size)
    dropout = result.effect("dropout").rows
    assert dropout["gap"].iloc[0] > dropout["gap"].iloc[-1] + 0.03  # dropout shrinks the gap


def test_importances_rank_learning_rate_and_classes_first(result):
    assert result.importance.method == "fANOVA"
    ranked = list(result.importance.values)
    assert set(ranked[:2]) == {"learning_rate", "classes"}
    assert result.importance.values["batch_size"] < 0.05
    assert sum(result.importance.values.values()) == pytest.approx(1.0)
    assert [e.name for e in result.effects][:2] == ranked[:2]


def test_reverse_log_parameter_is_analyzed_under_its_real_name(result):
    names = [e.name for e in result.effects]
    assert "beta" in names and not any("reverse_log_u" in n for n in names)
    rows = result.effect("beta").rows
    low, high = rows["value"].iloc[0].split("..")
    assert float(low) == pytest.approx(0.9) and float(high) < 0.93
    assert "beta" in result.importance.values


def test_confounding_note_points_to_ablate(result):
    assert any("confounded" in n and "search ablate --study synthetic" in n for n in result.notes)


def test_log_scale_from_distributions_without_a_space(study):
    plain = analyze(study)
    assert plain.effect("learning_rate").kind == "log-binned"
    assert plain.effect("dropout").kind == "binned"
    assert plain.effect("optimizer").kind == "categorical"


def test_params_selects_and_rejects_unknown(study):
    chosen = analyze(study, params=["classes", "learning_rate"], space=space_config())
    assert [e.name for e in chosen.effects] == ["classes", "learning_rate"]
    with pytest.raises(SearchError, match="unknown parameter.*nope"):
        analyze(study, params=["nope"])


def test_to_dict_is_json_round_trip(result):
    data = result.to_dict()
    again = json.loads(json.dumps(data, allow_nan=False))
    assert again == data
    params = {p["name"]: p for p in again["parameters"]}
    assert params["learning_rate"]["importance"] == pytest.approx(
        result.importance.values["learning_rate"])
    assert params["learning_rate"]["verdict"] == result.effect("learning_rate").verdict
    top = params["learning_rate"]["rows"][-1]
    assert top["value"] == "1e-2..1e-1" and top["failed"] > 0
    assert params["classes"]["rows"][0]["value"] == 10
    assert again["overview"]["best"]["number"] == result.overview["best"]["number"]


def test_trials_frame_for_csv(study):
    frame = trials_frame(study)
    for column in ("number", "state", "value", "datetime_start", "datetime_complete", "epochs",
                   "train_seconds", "sec_per_epoch", "trainable_params", "gap", "fail_reason",
                   "hp.learning_rate", "hp.batch_size", "hp.beta"):
        assert column in frame.columns
    assert len(frame) == 252
    text = frame.to_csv(index=False)
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == list(frame.columns)
    failed = back[back["state"] == "FAIL"]
    assert failed["fail_reason"].str.startswith("diverged").all()
    assert (back.loc[back["state"] == "COMPLETE", "trainable_params"] > 0).all()


def test_render_text_shows_tables_and_verdicts(result):
    console = Console(file=io.StringIO(), width=160, record=True)
    render_text(result, console)
    text = console.export_text()
    assert "Study synthetic" in text
    assert "fANOVA" in text
    assert result.effect("learning_rate").verdict.split(";")[0] in text.replace("\n", " ")
    assert "1e-4..1e-3" in text and "95% interval" in text


def test_render_text_escapes_markup():
    study = build_study(30, seed=3, study_name="[bold red]x[/bold red]")
    console = Console(file=io.StringIO(), width=160, record=True)
    render_text(analyze(study), console)
    assert "[bold red]x[/bold red]" in console.export_text()


def test_no_finished_trials_is_one_clear_line():
    study = build_study(0, running=1)
    with pytest.raises(SearchError) as err:
        analyze(study)
    message = str(err.value)
    assert "\n" not in message
    assert "no finished trials" in message and "1 running" in message
    with pytest.raises(SearchError, match="no finished trials"):
        analyze(optuna.create_study(study_name="empty"))


def test_all_failed_study_still_reports_failures():
    study = optuna.create_study()
    study.add_trials([optuna.create_trial(
        state=TrialState.FAIL, params={"lr": 0.1},
        distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)},
        user_attrs={"hp_values": {"lr": 0.1}, "fail_reason": "diverged: the loss became NaN at epoch 1"})
        for _ in range(3)])
    result = analyze(study)
    assert result.overview["best"] is None
    assert "3/3" in result.effect("lr").verdict
    assert result.importance.values == {}


def test_all_trials_reads_a_database_store_as_optuna_does(tmp_path):
    from search.analysis.study_analysis import all_trials

    for storage in (f"sqlite:///{tmp_path / 's.db'}", None):
        study = optuna.create_study(storage=storage, direction="maximize")
        for i in range(5):
            trial = study.ask()
            trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            trial.set_user_attr("history", {"val_accuracy": [0.1 * i]})
            trial.report(0.1 * i, 0)
            study.tell(trial, 0.1 * i)
        study.ask()  # one still running
        mine = all_trials(study)
        theirs = study.get_trials(deepcopy=False)
        assert [(t.number, t.state, t.value, t.params, t.user_attrs, t.intermediate_values)
                for t in mine] == [(t.number, t.state, t.value, t.params, t.user_attrs,
                                    t.intermediate_values) for t in theirs]
