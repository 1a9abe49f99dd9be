"""The store: engine set-up, study records, exact budget claims under concurrency, masked URLs."""

import multiprocessing

import pytest
import sqlalchemy

from search.storage import (
    StoreError,
    StudyRecord,
    StudyRecords,
    mask_url,
    open_storage,
)


def make_record(name="s", budget=3):
    return StudyRecord(study_name=name, space_path="spaces/x.py", space_sha256="0" * 64,
                       space_source="print()", config={"epochs": 1}, budget=budget)


def test_sqlite_store_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = open_storage(url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_records_round_trip_and_claims_stop_at_the_budget(tmp_path):
    records = StudyRecords(open_storage(f"sqlite:///{tmp_path / 'a.db'}").engine)
    records.add(make_record(budget=3))
    assert records.get("s").config == {"epochs": 1}
    assert [records.claim("s") for _ in range(5)] == [True, True, True, False, False]
    records.release("s")
    assert records.claim("s") and not records.claim("s")
    records.update("s", budget=4)
    assert records.claim("s") and not records.claim("s")
    assert records.get("missing") is None and records.names() == ["s"]


def _claim_all(url, out):
    records = StudyRecords(open_storage(url).engine)
    n = 0
    while records.claim("s"):
        n += 1
    out.put(n)


def test_claims_are_exact_across_processes(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    StudyRecords(open_storage(url).engine).add(make_record(budget=200))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(url, out)) for _ in range(8)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    assert sum(counts) == 200
    assert StudyRecords(open_storage(url).engine).get("s").claimed == 200


def test_mask_url_hides_the_password():
    assert mask_url("postgresql://search:s3cret@db/search") == "postgresql://search:***@db/search"
    assert mask_url("sqlite:///search.db") == "sqlite:///search.db"


def test_resolve_url_order(monkeypatch):
    from search.options import DEFAULT_STORAGE
    from search.options import resolve_storage as resolve_url

    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    assert resolve_url(None) == DEFAULT_STORAGE == "sqlite:///search.db"
    monkeypatch.setenv("SEARCH_STORAGE", "sqlite:///env.db")
    assert resolve_url(None) == "sqlite:///env.db"
    assert resolve_url("sqlite:///given.db") == "sqlite:///given.db"


def test_bad_urls_are_one_line_errors(tmp_path):
    with pytest.raises(StoreError, match="malformed storage URL"):
        open_storage("not a url")
    with pytest.raises(StoreError) as err:
        open_storage(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    assert "\n" not in str(err.value)


def test_records_live_beside_optunas_tables(tmp_path):
    store = open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    StudyRecords(store.engine)
    names = sqlalchemy.inspect(store.engine).get_table_names()
    assert "search_studies" in names and "studies" in names and "trials" in names
