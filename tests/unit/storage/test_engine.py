"""The store's engine: SQLite in WAL mode, one-line errors for bad URLs, passwords masked wherever
a URL is shown."""

import optuna
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


def test_read_only_opening_writes_nothing_to_a_plain_optuna_file(tmp_path):
    import sqlalchemy as sa

    from search.testing.plain_optuna import PLAIN, file_state, plain_optuna_store

    path = tmp_path / "plain.db"
    url = plain_optuna_store(path, trials=3, copy=False)
    before = file_state(path)
    store = open_storage(url, read_only=True)
    assert [s.study_name for s in store.get_all_studies()] == [PLAIN]
    tables = set(sa.inspect(store.engine).get_table_names())
    assert "studies" in tables and not any(t.startswith("search_") for t in tables)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"  # not switched to WAL
    with pytest.raises(Exception) as err:  # the connection itself cannot write
        store.set_study_user_attr(store.get_study_id_from_name(PLAIN), "k", 1)
    assert "readonly database" in str(err.value.__cause__)
    store.engine.dispose()
    assert file_state(path) == before


def test_read_only_opening_refuses_a_missing_file_and_a_file_that_is_not_optunas(tmp_path):
    import sqlite3

    with pytest.raises(storage.MissingStore):
        open_storage(f"sqlite:///{tmp_path / 'none.db'}", read_only=True)
    assert not (tmp_path / "none.db").exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (x)").connection.commit()
    with pytest.raises(StoreError, match=r"is not an Optuna store \(it holds other tables: notes\)"):
        open_storage(f"sqlite:///{other}", read_only=True)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(storage.MissingStore, match="yet: the database holds no tables"):
        open_storage(f"sqlite:///{empty}", read_only=True)  # a database `search start` has not used


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


def test_a_database_of_something_else_is_refused_and_left_as_it_was(tmp_path):
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(storage.StoreError) as caught:
        storage.open_storage(f"sqlite:///{path}")
    assert str(caught.value) == (f"the store sqlite:///{path} is not an Optuna store (it holds other "
                                 "tables: invoices): give a new file or an empty database; nothing "
                                 "was changed")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_a_store_of_another_optuna_schema_is_one_line_and_left_as_it_was(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    storage.open_storage(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v0.9.0.a'")
    before = path.read_bytes()
    with pytest.raises(storage.StoreError) as caught:
        storage.open_storage(f"sqlite:///{path}")
    message = str(caught.value)
    assert message.startswith(f"cannot open the store sqlite:///{path}: The runtime optuna version ")
    assert message.endswith("is no longer compatible with the table schema (set up by optuna "
                            f"{optuna.__version__}): use the Optuna version that made it, or back "
                            "it up and run `optuna storage upgrade --storage URL`; nothing was changed")
    assert "\n" not in message and path.read_bytes() == before
