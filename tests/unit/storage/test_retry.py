"""Transient store errors are retried: a new connection to a SQLite file that is gone for a while
waits for it (the whole study through such an outage: tests/e2e/test_faults.py)."""

import os
import time

import pytest

from search.testing import disks
from search.testing.studies import integrity


@pytest.mark.slow
def test_a_new_connection_to_a_missing_store_file_waits_for_it(tmp_path):
    """What a process that needs a new connection meets while the file is gone: a transient error,
    retried until the file is back (and no empty database at its path meanwhile)."""
    import threading

    from search import storage
    db = tmp_path / "store.db"
    store = storage.open_storage(f"sqlite:///{db}")
    storage.StudyRecords(store.engine)
    store.engine.dispose()  # the next operation opens a new connection
    os.rename(db, tmp_path / "away.db")
    back = threading.Timer(1.5, lambda: os.rename(tmp_path / "away.db", db))
    back.start()
    try:
        started = time.monotonic()
        assert storage.retrying(lambda: store.get_all_studies(), budget_s=30) == []
        assert time.monotonic() - started >= 1.0  # it waited for the file
    finally:
        back.join()
    assert integrity(db) == "ok"


def _attempts_of(fn):
    """``fn`` wrapped to count its calls (how often ``retrying`` tried it)."""
    calls = []

    def counted():
        calls.append(1)
        return fn()

    return counted, calls


def _store_with_records(db):
    """A SQLite store at ``db`` with our tables, its connections closed (the next operation opens
    the file anew: an open connection would write its -wal file, not the file itself)."""
    from search import storage

    store = storage.open_storage(f"sqlite:///{db}")
    records = storage.StudyRecords(store.engine)
    records.add(storage.StudyRecord(study_name="s", space_path="x.py", space_sha256="0" * 64,
                                    space_source="", config={}, budget=1))
    store.engine.dispose()
    return store, records


def test_an_immutable_store_file_fails_at_once_with_what_to_do(tmp_path):
    """chattr +i (or a read-only file): not retried as a lost connection, one line that says so."""
    from search import storage

    db = tmp_path / "store.db"
    _, records = _store_with_records(db)
    with disks.immutable(db):
        write, calls = _attempts_of(lambda: records.grow_budget("nope", 1))
        with pytest.raises(Exception) as raised:
            storage.retrying(write, budget_s=120)
        assert len(calls) == 1  # not retried: waiting does not make the file writable
        line = str(storage.store_failed(raised.value))
        assert line.startswith("the store failed: ") and "not immutable (chattr -i)" in line


def test_a_full_disk_under_the_store_fails_at_once_with_what_to_do(tmp_path):
    import sqlalchemy

    from search import storage

    with disks.small_tmpfs(tmp_path / "small", "256k") as mount:
        store = storage.open_storage(f"sqlite:///{mount / 'store.db'}")
        storage.StudyRecords(store.engine)
        filler = sqlalchemy.text("INSERT INTO filler VALUES (:blob)")
        with store.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE filler (blob BLOB)")

        def fill():
            while True:
                with store.engine.begin() as conn:
                    conn.execute(filler, {"blob": os.urandom(16384)})

        write, calls = _attempts_of(fill)
        with pytest.raises(Exception) as raised:
            storage.retrying(write, budget_s=120)
        assert len(calls) == 1
        line = str(storage.store_failed(raised.value))
        assert "database or disk is full" in line and "its disk is full" in line, line
        store.engine.dispose()


def test_inside_a_running_study_an_immutable_store_is_waited_for_until_it_is_writable(tmp_path, caplog):
    """What a worker meets when the file is made unwritable mid-study: one warning with what to do,
    then the same write goes through once the file is writable again."""
    import logging
    import subprocess
    import threading

    from search import storage

    db = tmp_path / "store.db"
    _, records = _store_with_records(db)
    with disks.immutable(db):
        writable = threading.Timer(2.0, lambda: subprocess.run(["chattr", "-i", str(db)], check=False))
        writable.start()
        try:
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="search.storage"), storage.waiting_for_writable():
                records.grow_budget("s", 3)  # its own retrying
            assert time.monotonic() - started >= 1.5  # it waited for the file
        finally:
            writable.join()
    assert records.get("s").budget == 4
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("the store cannot be written (grow_budget: attempt to write a readonly "
                               "database): ") and "chattr -i" in line
               and "the study goes on once it can" in line for line in lines), lines
    assert any(line.startswith("the store can be written again (grow_budget") for line in lines), lines


def test_inside_a_running_study_a_store_that_stays_unwritable_fails_after_the_wait(tmp_path, monkeypatch):
    from search import storage
    from search.storage import retry

    db = tmp_path / "store.db"
    _, records = _store_with_records(db)
    monkeypatch.setattr(retry, "WRITABLE_WAIT_SECONDS", 1.0)
    with disks.immutable(db):
        started = time.monotonic()
        with pytest.raises(Exception) as raised, storage.waiting_for_writable():
            storage.retrying(lambda: records.grow_budget("nope", 1), budget_s=120)
        assert 0.5 < time.monotonic() - started < 10
        assert "not immutable (chattr -i)" in str(storage.store_failed(raised.value))
