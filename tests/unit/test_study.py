"""search.study: studies search did not create (a plain Optuna study, a copy made with
``optuna.copy_study``) are listed by ``search status`` and analysed by ``search analyze``, and no
read-only command changes a byte of the store; what needs a space says so in one line."""

import json

import optuna
import pytest
from click.testing import CliRunner

from search import cli
from search.testing.plain_optuna import COPIED, PLAIN, file_state, plain_optuna_store

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory):
    """One store for the module: every test checks that it leaves the file's bytes as they were."""
    path = tmp_path_factory.mktemp("plain") / "plain.db"
    url = plain_optuna_store(path, trials=12)
    return path, url


def run(*args):
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False,
                              env={"COLUMNS": "200"})


def test_status_lists_and_shows_plain_optuna_studies_and_writes_nothing(plain_store):
    path, url = plain_store
    before = file_state(path)
    listed = run("status", "--storage", url)
    assert listed.exit_code == 0, listed.output
    assert "No studies" not in listed.output
    assert f"{COPIED} " in listed.output and f"{PLAIN} " in listed.output
    assert "value (min)" in listed.output
    shown = run("status", "--storage", url, "--study", PLAIN)
    assert shown.exit_code == 0, shown.output
    assert "12 trials finished (12 complete)" in shown.output
    assert "a plain Optuna study (not created by `search start`)" in shown.output
    as_json = json.loads(run("status", "--storage", url, "--format", "json").output)
    by_name = {s["study"]: s for s in as_json}
    assert by_name[PLAIN]["foreign"] and by_name[PLAIN]["budget"] is None
    assert by_name[PLAIN]["best"]["value"] == by_name[COPIED]["best"]["value"] == \
        optuna.load_study(study_name=PLAIN, storage=url).best_value
    assert set(by_name[PLAIN]["best"]["params"]) == {"lr", "optimizer", "units"}
    assert file_state(path) == before  # no table made, the journal not switched to WAL


def test_analyze_reads_a_plain_and_a_copied_study_in_every_format_and_writes_nothing(plain_store, tmp_path):
    path, url = plain_store
    before = file_state(path)
    report = tmp_path / "plain.html"
    text = run("analyze", "--storage", url, "--study", PLAIN, "--html", str(report))
    assert text.exit_code == 0, text.output
    assert "value (minimize)" in text.output and "optimizer (categorical" in text.output
    assert "lr (log-binned" in text.output  # the log scale from Optuna's distribution
    assert "A plain Optuna study" in text.output
    assert "training time" in text.output and "not recorded" in text.output  # not "0.0 s in fit"
    assert report.stat().st_size > 10_000 and "not recorded" in report.read_text()
    analysis = json.loads(run("analyze", "--storage", url, "--study", COPIED, "--format", "json").output)
    assert analysis["study"] == COPIED and analysis["direction"] == "minimize"
    assert analysis["overview"]["finished"] == 12 and analysis["overview"]["budget"] is None
    assert analysis["overview"]["train_seconds"] is None
    kinds = {p["name"]: (p["kind"], p["log"]) for p in analysis["parameters"]}
    assert kinds["lr"][1] is True and set(kinds) == {"lr", "optimizer", "units"}
    assert any("A plain Optuna study" in note for note in analysis["notes"])
    assert file_state(path) == before


@pytest.mark.parametrize("args, needs", [
    (["ablate"], "`search ablate` needs its space"),
    (["best", "--evaluate"], "`search best --evaluate` needs its space"),
])
def test_what_needs_a_space_is_one_line_and_writes_nothing(plain_store, args, needs):
    path, url = plain_store
    before = file_state(path)
    result = CliRunner().invoke(cli.main, [*args, "--storage", url, "--study", PLAIN])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needs in lines[0] and "was not created by `search start`" in lines[0]
    assert file_state(path) == before


def test_best_lists_a_plain_studys_top_trials_without_claiming_checkpoints(plain_store):
    path, url = plain_store
    before = file_state(path)
    result = run("best", "--storage", url, "--study", PLAIN, "--top", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.output)
    values = sorted(t.value for t in optuna.load_study(study_name=PLAIN, storage=url).trials)
    assert [t["value"] for t in best["trials"]] == values[:2]
    assert all("search kept no checkpoints" in t["checkpoint"] for t in best["trials"])
    assert file_state(path) == before


def test_a_worker_for_a_plain_or_a_mistyped_study_is_refused_before_anything_is_written(plain_store):
    from search.errors import SearchError
    from search.study import open_study

    path, url = plain_store
    before = file_state(path)
    with pytest.raises(SearchError, match="was not created by `search start`"):
        open_study(url, PLAIN)  # what `search worker --study plain` opens
    with pytest.raises(SearchError, match="no study named 'plian'"):
        open_study(url, "plian")
    assert file_state(path) == before


def test_the_best_trial_of_each_swept_condition():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from search.study import best_per_condition

    def trial(number, classes, value, state=TrialState.COMPLETE):
        t = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                         params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1)},
                         user_attrs={"condition": {"classes": classes}})
        t.number = number
        return t

    trials = [trial(0, 10, 0.5), trial(1, 3, 0.9), trial(2, 10, 0.7), trial(3, 3, 0.8),
              trial(4, 6, None, TrialState.PRUNED)]
    bests = best_per_condition(trials, "max")
    assert [(c.condition, c.complete, c.best and c.best.number) for c in bests] == \
        [({"classes": 10}, 2, 2), ({"classes": 3}, 2, 1), ({"classes": 6}, 0, None)]
    assert [c.best.number for c in best_per_condition(trials, "min")[:2]] == [0, 3]
    assert best_per_condition([trial(0, 3, 0.5)][:0], "max") == []
