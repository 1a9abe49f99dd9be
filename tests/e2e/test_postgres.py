"""Several workers on a real PostgreSQL server (search/testing/postgres.py starts one on loopback): the budget is
exact, a worker killed with SIGKILL costs nothing, and a server restart mid-study is ridden out."""

from __future__ import annotations

import pytest
import sqlalchemy
from optuna.trial import TrialState

from search import storage
from search.testing.cli import popen_cli
from search.testing.faults import kill_a_worker_mid_trial
from search.testing.studies import (
    trials_of,
    wait_for_trials,
    worker_rows,
)

pytestmark = pytest.mark.slow


def test_postgres_store_is_optunas_with_our_tables(pg_url):
    store = storage.open_storage(pg_url)
    storage.StudyRecords(store.engine)
    storage.WorkerRegistry(store.engine)
    names = set(sqlalchemy.inspect(store.engine).get_table_names())
    assert {"studies", "trials", "trial_heartbeats", "search_studies", "search_workers"} <= names
    assert "***" in storage.mask_url(pg_url) and pg_url.split(":")[2].split("@")[0] not in storage.mask_url(pg_url)


def test_postgres_study_survives_a_killed_worker(tiny_space, pg_url):
    kill_a_worker_mid_trial(pg_url, tiny_space, workers=3, budget=5)


def test_postgres_restart_mid_study_and_the_workers_carry_on_to_exactly_the_budget(
        tiny_space, pg_url, postgres_server):
    budget = 6
    # The grace period outlasts the outage, so no trial is taken for dead while the server is down.
    proc = popen_cli("start", str(tiny_space), "--storage", pg_url, "--trials", str(budget),
                     "--epochs", "5", "--workers", "3", "--pruner", "none",
                     "--heartbeat", "1", "--grace", "20")

    def mid_study(trials):
        # a trial done and one in training, read through one open connection ten times a
        # second: on a loaded machine a trial's first epochs pass between two slower reads
        return any(t.state == TrialState.COMPLETE for t in trials) and any(
            t.state == TrialState.RUNNING and t.intermediate_values for t in trials)

    wait_for_trials(pg_url, mid_study, 150, "a worker in the middle of a trial", proc)
    postgres_server.restart(down_s=2.0)  # every connection is cut; new ones are refused for 2 s
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    trials = trials_of(pg_url)
    assert len(trials) == budget
    assert all(t.state == TrialState.COMPLETE for t in trials), \
        [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials]
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) >= 2  # several workers took part
    rows = worker_rows(pg_url)
    assert len(rows) == 3 and all(r.state == "exited" for r in rows)
    assert sum(r.trials_run for r in rows) == budget
