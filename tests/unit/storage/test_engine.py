"""The store's engine: SQLite in WAL mode, one-line errors for bad URLs, passwords masked wherever
a URL is shown."""

import pytest

from search import storage
from search.storage import StoreError, mask_url, open_storage


def test_sqlite_store_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = open_storage(url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_mask_url_hides_the_password():
    assert mask_url("postgresql://search:s3cret@db/search") == "postgresql://search:***@db/search"
    assert mask_url("sqlite:///search.db") == "sqlite:///search.db"


def test_bad_urls_are_one_line_errors(tmp_path):
    with pytest.raises(StoreError, match="malformed storage URL"):
        open_storage("not a url")
    with pytest.raises(StoreError) as err:
        open_storage(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    assert "\n" not in str(err.value)


def test_the_password_is_masked_wherever_a_url_is_shown():
    for url, shown in [
        ("postgresql://search:s3cret@db/search", "postgresql://search:***@db/search"),
        ("postgresql://search:s%40cret@db/search", "postgresql://search:***@db/search"),
        ("postgresql://search@db/search?password=s3cret", "postgresql://search@db/search?password=***"),
        ("postgresql://search:s@cret@db/search", "postgresql://search:***@db/search"),
        ("postgresql//search:s3cret@db/search", "postgresql//search:***@db/search"),
    ]:
        assert storage.mask_url(url) == shown
        assert "s3cret" not in shown and "cret" not in shown


def _open_at_once(url, barrier, results):
    barrier.wait()
    try:
        open_storage(url)
        results.put("ok")
    except StoreError as exc:
        results.put(str(exc))


def test_processes_opening_one_new_store_at_once_all_open_it(tmp_path):
    """Two ``search start`` of a new study open a new file together: each creates Optuna's
    tables, and the one that loses the race opens the store again instead of failing."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(6):
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        barrier, results = context.Barrier(4), context.Queue()
        procs = [context.Process(target=_open_at_once, args=(url, barrier, results))
                 for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["ok"] * 4, outcomes


@pytest.mark.parametrize("url, plain, line", [
    ("postgresql://search:p%40ss:w@db:6543/search?connect_timeout=5",
     "postgresql://search@db:6543/search?connect_timeout=5", "db:6543:search:search:p@ss\\:w"),
    ("postgresql+psycopg2://u@db/d?password=x&sslmode=require",
     "postgresql+psycopg2://u@db/d?sslmode=require", "db:5432:d:u:x"),
    ("postgresql://u:back\\slash@/d", "postgresql://u@/d", "localhost:5432:d:u:back\\\\slash"),
])
def test_without_password_gives_the_url_and_the_password_file_line(url, plain, line):
    assert storage.without_password(url) == (plain, storage.without_password(url)[1], line)
    assert storage.without_password(plain) == (plain, None, None)
