"""The workers table: a store made before the ``job`` column gets it when opened, old rows
keeping none, new ones recording their batch job (Slurm's ``1234_2``)."""

from __future__ import annotations

import sqlalchemy as sa

from search.storage import WorkerRegistry


def test_an_old_workers_table_gets_the_job_column(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:  # the table as it was before the job column
        conn.execute(sa.text(
            "CREATE TABLE search_workers (worker_id INTEGER PRIMARY KEY, study_name VARCHAR(512) "
            "NOT NULL, host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL, slot INTEGER, gpu "
            "VARCHAR(255), state VARCHAR(32) NOT NULL, trial_number INTEGER, trials_run INTEGER NOT "
            "NULL, started_at DATETIME NOT NULL, last_heartbeat DATETIME NOT NULL)"))
        conn.execute(sa.text(
            "INSERT INTO search_workers VALUES (1, 's', 'old-host', 7, 0, NULL, 'exited', NULL, 2, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    registry = WorkerRegistry(engine)
    WorkerRegistry(engine)  # a second opening finds the column there
    registry.register("s", "node1", 8, None, None, job="40_2")
    rows = {r.host: r for r in registry.list("s")}
    assert rows["old-host"].job is None and rows["node1"].job == "40_2"
    assert rows["node1"].to_dict()["job"] == "40_2"
