"""Transient store errors are retried: a new connection to a SQLite file that is gone for a while
waits for it (the whole study through such an outage: tests/e2e/test_faults.py)."""

import os
import time

import pytest

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
