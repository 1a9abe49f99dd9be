"""Study records beside Optuna's tables: exact budget claims, also across processes, and claims
stopping at the deadline (the engine: tests/unit/storage/test_engine.py). Light imports: the
spawned processes import this module."""

import multiprocessing
import time

import sqlalchemy

from search import storage
from search.storage import (
    StudyRecord,
    StudyRecords,
    open_storage,
)


def make_record(name="s", budget=3):
    return StudyRecord(study_name=name, space_path="spaces/x.py", space_sha256="0" * 64,
                       space_source="print()", config={"epochs": 1}, budget=budget)


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


def test_records_live_beside_optunas_tables(tmp_path):
    store = open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    StudyRecords(store.engine)
    names = sqlalchemy.inspect(store.engine).get_table_names()
    assert "search_studies" in names and "studies" in names and "trials" in names


def test_claims_stop_at_the_deadline(tmp_path):
    records = storage.StudyRecords(storage.open_storage(f"sqlite:///{tmp_path / 'a.db'}").engine)
    records.add(storage.StudyRecord(study_name="s", space_path="x.py", space_sha256="0" * 64,
                                    space_source="", config={}, budget=10, deadline=time.time() + 60))
    assert records.claim("s")
    records.update("s", deadline=time.time() - 1)
    assert not records.claim("s") and records.get("s").past_deadline
    records.update("s", deadline=None)  # a resume without --timeout
    assert records.claim("s") and records.get("s").claimed == 2
