"""Start options: checked before anything is stored, stored with the study, the store's URL
resolved from --storage and SEARCH_STORAGE."""

import dataclasses

import pytest
from click.testing import CliRunner

from search.cli import main
from search.errors import SearchError
from search.options import OPTIONS, START_OPTIONS, OptionError, StudyConfig, option_flag, start_options


@pytest.mark.parametrize("options, message", [
    ({"timeout": 0}, "--timeout must be a positive"),
    ({"heartbeat": 0}, "--heartbeat must be at least 1"),
    ({"grace": 3, "heartbeat": 3}, "--grace must be longer"),
    ({"pruner": "sometimes"}, "unknown pruner"),
    ({"timeout": float("nan")}, "--timeout must be a positive number of seconds (got nan)"),
    ({"timeout": float("inf")}, "--timeout must be a positive number of seconds (got inf)"),
    ({"trials": 10**19}, "--trials must be at most 2147483647 (the store's integer; got 10000000000000000000)"),
    ({"epochs": 10**14}, "--epochs must be at most 2147483647 (the store's integer, an epoch's step; "
                         "got 100000000000000)"),
    ({"trial_timeout": 1e300}, "--trial-timeout must be at most 1000000000 seconds (got 1e+300)"),
    ({"timeout": 1e300}, "--timeout must be at most 1000000000 seconds (got 1e+300)"),
    ({"heartbeat": 10**11, "grace": 10**11 + 1}, "--heartbeat must be at most 1000000000 seconds (got 100000000000)"),
    ({"seed": 2**32}, "--seed must be at most 4294967295 (the seeds NumPy takes; got 4294967296)"),
    ({"seed": -1}, "--seed must be at least 0 (got -1)"),
    ({"keep_best": 10**12}, "--keep-best must be at most 2147483647 (a study's most trials; got 1000000000000)"),
    ({"max_retry": 2**31}, "--max-retry must be at most 2147483647 (a study's most trials; got 2147483648)"),
    ({"max_consecutive_failures": 10**12}, "--max-consecutive-failures must be at most 2147483647"),
    ({"max_retry": -1}, "--max-retry must be 0 or more (got -1)"),
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


def test_the_cli_flags_are_the_options():
    shown = CliRunner().invoke(main, ["start", "--help"], terminal_width=200).output
    for option in START_OPTIONS:
        assert option_flag(option.name) in shown, option.name


def test_a_stored_option_is_a_field_of_the_stored_config_with_the_same_default():
    fields = {f.name: f for f in dataclasses.fields(StudyConfig)}
    for option in START_OPTIONS:
        if option.stored:
            assert option.name in fields, option.name
            stored_default = fields[option.name].default  # data has none: the space's DATA
            assert stored_default in (option.default, dataclasses.MISSING), option.name


@pytest.mark.parametrize("values, python, flag", [
    ({"trials": 0}, "trials must be at least 1 (got 0)", "--trials must be at least 1 (got 0)"),
    ({"keep_best": -1}, "keep_best must be 0 or more", "--keep-best must be 0 or more"),
    ({"trial_timeout": 0}, "trial_timeout must be a positive number", "--trial-timeout must be a positive"),
    ({"heartbeat": 0}, "heartbeat must be at least 1 second", "--heartbeat must be at least 1 second"),
    ({"grace": 5, "heartbeat": 5}, "grace must be longer than the heartbeat", "--grace must be longer"),
    ({"sampler": "bayes"}, "unknown sampler 'bayes'", "unknown sampler 'bayes'"),
])
def test_a_bad_value_is_named_as_the_caller_names_it(values, python, flag):
    with pytest.raises(OptionError) as raised:
        start_options("spaces/cnn.py", **values)
    assert str(raised.value).startswith(python) and raised.value.as_flag().startswith(flag)


def test_unknown_options_and_normalised_values():
    with pytest.raises(SearchError, match="unknown option 'trails'"):
        start_options("spaces/cnn.py", trails=3)
    given = start_options("spaces/cnn.py", artifacts="runs/ckpt", trials=None, epochs=3)
    assert given.artifacts.endswith("/runs/ckpt") and given.artifacts.startswith("/")
    assert given.trials is None and given.epochs == 3 and given.given("fixed") == {
        "epochs": 3, "artifacts": given.artifacts}
    assert OPTIONS["trials"].stored is None  # the budget lives in the study's record


@pytest.mark.parametrize("name, problem", [
    ("", "it is empty"), ("   ", "it is empty"), ("x" * 231, "it has 231 characters"),
    ("a\nb", "control character"), ("a\x00b", "control character"),
])
def test_a_study_name_no_command_could_use_is_refused_with_what_is_allowed(name, problem):
    from search.options import check_study_name

    with pytest.raises(SearchError) as raised:
        check_study_name(name)
    assert problem in str(raised.value)
    assert "a study name is 1 to 200 printable characters" in str(raised.value)


def test_file_names_made_from_study_names_differ_for_every_name():
    from search.options import check_study_name, study_file_name

    names = ["cnn", "..", "../../etc/x", "etc_x", "a/b", "a%2Fb", "a_b", "a b", ".hidden", "%2E.",
             "~", "%7E", "é", "x" * 200, "x" * 199 + "y", "/" * 200, "%2F" * 60, "vgg.v2"]
    files = [study_file_name(n) for n in names]
    assert len(set(files)) == len(names), files
    for name, file in zip(names, files):
        check_study_name(name)  # all of them are allowed names
        assert "/" not in file and not file.startswith(".") and 0 < len(file) <= 120, (name, file)
    assert study_file_name("cnn") == "cnn" and study_file_name("vgg.v2") == "vgg.v2"  # plain names stay


@pytest.mark.parametrize("fixed, sweep, message", [
    ({}, {"classes": ["3"]}, "--sweep classes=3: give two or more different values (one value: --set classes=VALUE"),
    ({}, {"classes": ["3", "3"]}, "--sweep classes=3,3: give two or more different values"),
    ({}, {"classes": "3,6"}, "--sweep classes=3,6: expected a list of values"),
    ({"classes": "3"}, {"classes": ["3", "6"]},
     "--sweep classes=3,6 and --set classes=3: a hyperparameter is either fixed or swept"),
])
def test_a_sweep_is_checked_before_anything_loads(fixed, sweep, message):
    with pytest.raises(SearchError) as raised:
        start_options("spaces/cnn.py", fixed, sweep)
    assert message in str(raised.value)
    assert start_options("spaces/cnn.py", {}, {"resize": ["8", "16"]}).sweep == {"resize": ["8", "16"]}


@pytest.mark.parametrize("args, message", [
    (["--sweep", "classes"], "--sweep 'classes': expected NAME=VALUE,VALUE,..., e.g. classes=3,6,10"),
    (["--sweep", "classes="], "--sweep 'classes=': expected NAME=VALUE,VALUE,..."),
    (["--sweep", "classes=3,6", "--sweep", "classes=10,20"], "--sweep classes is given twice"),
])
def test_a_malformed_sweep_flag_is_one_line(args, message):
    result = CliRunner().invoke(main, ["start", "spaces/cnn.py", *args])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
