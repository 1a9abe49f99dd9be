"""search.commands.start.prepare: a new study's stored configuration, and what a resume may change."""

import pytest

from search.commands.start import prepare
from search.errors import SearchError
from search.options import start_options
from search.testing.spaces import TINY_SPACE


@pytest.fixture
def created(tmp_path):
    space = tmp_path / "tiny.py"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    prepared = prepare(start_options(str(space), storage=url, trials=2, epochs=1, heartbeat=40))
    prepared.stored.storage.engine.dispose()
    return str(space), url, prepared


def test_a_new_study_stores_its_options(created):
    _, _, prepared = created
    config = prepared.stored.config
    assert not prepared.resumed and prepared.stored.record.budget == 2
    assert (config.epochs, config.heartbeat, config.grace, config.max_retry) == (1, 40, 80, 3)
    assert config.trial_timeout is None and config.sampler == "tpe" and config.keep_best == 3


def test_a_resume_changes_the_changeable_options_and_says_so(created):
    space, url, _ = created
    resumed = prepare(start_options(space, storage=url, trial_timeout=5, max_retry=1, heartbeat=10))
    config = resumed.stored.config
    assert resumed.resumed and (config.trial_timeout, config.max_retry) == (5, 1)
    assert (config.heartbeat, config.grace) == (10, 60)  # the grace moves along with --heartbeat
    assert "trial timeout changed from no limit to 5 s" in resumed.notes
    assert "max retry changed from 3 to 1" in resumed.notes
    again = prepare(start_options(space, storage=url, trial_timeout=5))
    assert not any("changed" in note for note in again.notes)  # nothing changed this time


def test_a_resume_that_contradicts_a_fixed_option_changes_nothing(created):
    space, url, _ = created
    with pytest.raises(SearchError, match="was created with --epochs 1: resume without --epochs 2"):
        prepare(start_options(space, storage=url, epochs=2, trials=5))
    assert prepare(start_options(space, storage=url)).stored.record.budget == 2


def test_a_sweep_is_stored_as_the_spaces_values_and_the_trials_take_them_in_turn(tmp_path):
    import optuna

    from search import api
    from search.testing.spaces import SUBSET_SPACE

    space = tmp_path / "subset.py"
    space.write_text(SUBSET_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    prepared = prepare(start_options(str(space), {"units": "16"}, {"classes": ["10", "4"]}, storage=url,
                                     trials=4, epochs=1))
    prepared.stored.storage.engine.dispose()
    assert prepared.stored.config.sweep == {"classes": [10, 4]}  # the space's values, in the order given
    api.worker(prepared.study_name, storage=url)
    trials = optuna.load_study(study_name=prepared.study_name, storage=url).trials
    assert [t.user_attrs["condition"] for t in trials] == [{"classes": c} for c in (10, 4, 10, 4)]
    assert [t.user_attrs["hp_values"]["classes"] for t in trials] == [10, 4, 10, 4]  # trained on it
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    with pytest.raises(SearchError, match="was created with --sweep classes=10,4: resume without "
                                          "--sweep classes=4,10"):
        prepare(start_options(str(space), {}, {"classes": ["4", "10"]}, storage=url))
    assert prepare(start_options(str(space), {}, {"classes": ["10", "4"]}, storage=url)).resumed


@pytest.mark.parametrize("sweep, message", [
    ({"classes": ["4", "7"]}, "--sweep classes=4,7: not one of the choices [4, 10]"),
    ({"depth": ["1", "2"]}, "--sweep depth=1,2: the space defines no hyperparameter 'depth'"),
])
def test_a_sweep_outside_the_space_is_one_line_and_stores_nothing(tmp_path, sweep, message):
    from search.testing.spaces import SUBSET_SPACE

    space = tmp_path / "subset.py"
    space.write_text(SUBSET_SPACE)
    with pytest.raises(SearchError) as raised:
        prepare(start_options(str(space), {}, sweep, storage=f"sqlite:///{tmp_path / 'store.db'}"))
    assert message in str(raised.value)
