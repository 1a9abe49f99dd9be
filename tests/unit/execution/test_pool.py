"""The pool's worker processes: each is told which space source and configuration to accept and
which pool to watch, and gets the store's URL through its environment, never on its command line
(visible to every user of the machine); how many a store has room for; the line a crash leaves
(real crashes, a failed start and a killed coordinator: tests/e2e/test_faults.py)."""

import os
from types import SimpleNamespace

import pytest


def test_local_workers_are_told_which_source_to_accept():
    from search.execution.pool import worker_command

    command = worker_command("cnn", 0, "ab" * 32, "cd" * 32)
    assert command[command.index("--space-sha256") + 1] == "ab" * 32
    assert command[command.index("--config-sha256") + 1] == "cd" * 32
    assert command[command.index("--pool-pid") + 1] == str(os.getpid())
    assert not any("postgresql" in part or "sqlite" in part for part in command)  # URL via env only


def test_more_workers_than_a_postgresql_store_has_connections_for_is_one_line(postgres_server):
    import sqlalchemy

    from search.errors import SearchError
    from search.execution.pool import CONNECTIONS_PER_WORKER, check_store_room
    from search.storage import free_connections

    engine = sqlalchemy.create_engine(postgres_server.url(postgres_server.create_database()))
    try:
        free = free_connections(engine)
        with engine.connect() as conn:
            most = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
        assert 0 < free < most
        stored = SimpleNamespace(storage=SimpleNamespace(engine=engine))
        check_store_room(stored, 1)
        with pytest.raises(SearchError, match=r"workers need about \d+ connections to the store and it "
                                              r"has \d+ left \(max_connections\): run at most"):
            check_store_room(stored, free // CONNECTIONS_PER_WORKER + 1)
    finally:
        engine.dispose()
    assert free_connections(sqlalchemy.create_engine("sqlite://")) is None


def test_a_crash_cause_is_python_s_fatal_error_or_the_last_line_that_is_not_chatter(tmp_path):
    from search.execution.pool import crash_cause

    log = tmp_path / "worker.log"
    log.write_text("I0000 00:00:1796195866.553898   21299 cudart_stub.cc:31] Could not find cuda "
                   "drivers on your machine, GPU will not be used.\n"
                   "2026-12-02 07:00:00.000000: I tensorflow/core/platform/cpu_feature_guard.cc:210] "
                   "This TensorFlow binary is optimized\n"
                   "error: the store failed: database or disk is full\n"
                   "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert crash_cause(str(log)) == "error: the store failed: database or disk is full"
    log.write_text("I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers\n")
    assert crash_cause(str(log)) is None
    log.write_text("WARNING search.data: digits: the inputs are uint8 pixels 0..255 and the model has "
                   "no Rescaling or Normalization layer: it trains on raw values\n")
    assert crash_cause(str(log)) is None  # our own note about the data is not why it died


def test_what_the_workers_said_of_the_store_is_relayed_when_the_last_one_exits(tmp_path, caplog):
    """The clean-clone CI saw it: the disk freed, the study ended within a heartbeat, and the
    coordinator, which read the workers' logs once per heartbeat, never said either line."""
    import logging
    import subprocess
    import sys

    from search.execution.pool import LocalWorker, _follow
    from search.storage.retry import UNWRITABLE, WRITABLE_AGAIN

    log = tmp_path / "worker-0.log"
    log.write_text(f"{UNWRITABLE}: database or disk is full\n{WRITABLE_AGAIN}\n")
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    worker = LocalWorker(slot=0, gpu=None, proc=done, log_path=str(log), seen=True)
    with caplog.at_level(logging.WARNING, logger="search.execution.pool"):
        _follow(stored=None, reaper=None, workers=[worker], on_progress=None, spawner=None)
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{UNWRITABLE}: database or disk is full", WRITABLE_AGAIN]
