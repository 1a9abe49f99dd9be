"""A plain Optuna study on PostgreSQL (a real server on loopback): `search status` and `search
analyze` read it in sessions that cannot write, and leave the database without a table of ours."""

import json
import warnings

import optuna
import pytest
import sqlalchemy as sa

from search.storage import open_storage
from search.testing.cli import run_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial):
    return (trial.suggest_float("lr", 1e-4, 1e-1, log=True) - 0.01) ** 2 + \
        (0.1 if trial.suggest_categorical("optimizer", ["adam", "sgd"]) == "sgd" else 0.0)


def _tables(url):
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_status_and_analyze_read_a_plain_optuna_study_on_postgres_and_write_nothing(pg_url):
    study = optuna.create_study(study_name="plain", storage=pg_url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["score"])
    study.optimize(lambda t: -_objective(t), n_trials=8)
    tables = _tables(pg_url)
    listed = run_cli("status", "--storage", pg_url, "--format", "json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    (snap,) = json.loads(listed.stdout)
    assert (snap["study"], snap["objective"], snap["direction"]) == ("plain", "score", "max")
    assert snap["best"]["value"] == study.best_value
    analysed = run_cli("analyze", "--storage", pg_url, "--study", "plain", "--format", "json")
    assert analysed.returncode == 0, analysed.stderr[-2000:]
    assert json.loads(analysed.stdout)["direction"] == "maximize"
    assert _tables(pg_url) == tables  # no search_studies, no search_workers


def test_a_read_only_postgres_session_cannot_write(pg_url):
    optuna.create_study(study_name="plain", storage=pg_url)
    store = open_storage(pg_url, read_only=True)
    try:
        with pytest.raises(Exception) as err:
            store.set_study_user_attr(store.get_study_id_from_name("plain"), "k", 1)
        assert "read-only transaction" in str(err.value.__cause__ or err.value)
    finally:
        store.engine.dispose()
