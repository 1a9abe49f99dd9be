"""Start options: checked before anything is stored, stored with the study, the store's URL
resolved from --storage and SEARCH_STORAGE."""

import pytest

from search.errors import SearchError


@pytest.mark.parametrize("options, message", [
    ({"timeout": 0}, "--timeout must be a positive"),
    ({"heartbeat": 0}, "--heartbeat must be at least 1"),
    ({"grace": 3, "heartbeat": 3}, "--grace must be longer"),
    ({"pruner": "sometimes"}, "unknown pruner"),
])
def test_start_options_are_checked_before_anything_is_stored(options, message):
    from search.options import start_options

    with pytest.raises(SearchError) as raised:
        start_options("spaces/cnn.py", **options)
    shown = raised.value.as_flag() if hasattr(raised.value, "as_flag") else str(raised.value)
    assert message in shown


@pytest.mark.slow
def test_trial_timeout_is_stored_with_the_study_and_checked():
    from search.options import OptionError, StudyConfig, start_options

    assert StudyConfig.from_dict({"space_path": "x.py", "data": "digits"}).trial_timeout is None
    assert StudyConfig(space_path="x.py", data="digits", trial_timeout=5).to_dict()["trial_timeout"] == 5
    # a store written before the stored keys were the option names
    assert StudyConfig.from_dict({"space_path": "x.py", "data": "digits", "trial_timeout_s": 7,
                                  "heartbeat_s": 2, "grace_s": 9}).trial_timeout == 7
    with pytest.raises(OptionError, match="trial_timeout must be a positive") as raised:
        start_options("spaces/cnn.py", trial_timeout=0)
    assert raised.value.as_flag().startswith("--trial-timeout must be a positive")


def test_resolve_url_order(monkeypatch):
    from search.options import DEFAULT_STORAGE
    from search.options import resolve_storage as resolve_url

    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    assert resolve_url(None) == DEFAULT_STORAGE == "sqlite:///search.db"
    monkeypatch.setenv("SEARCH_STORAGE", "sqlite:///env.db")
    assert resolve_url(None) == "sqlite:///env.db"
    assert resolve_url("sqlite:///given.db") == "sqlite:///given.db"
