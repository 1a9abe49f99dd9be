"""Open Optuna's RDB storage with engine settings fit for several worker processes.

SQLite: WAL journal (readers never block the writer) and a busy timeout, so parallel workers
wait for the write lock instead of failing with ``database is locked``. Every transaction starts
with ``BEGIN IMMEDIATE`` (SQLAlchemy's documented pysqlite recipe): SQLite ignores Optuna's
``SELECT ... FOR UPDATE``, so without it two workers can both read a WAITING trial and both
claim it; with it the read and the claim of a transaction hold the write lock together.
PostgreSQL: a pool with pre-ping, so a restarted server is reconnected, and every operation retried
while the server is unreachable (``storage.resilient``).

Read-only (``open_storage(url, read_only=True)``, for ``search status``, ``analyze`` and ``best``):
nothing is written, to our store or to any Optuna store (one ``search`` did not create, a copy
made with ``optuna.copy_study``): no table is created, the journal mode is left as it is, and the
connections themselves cannot write (SQLite opens the file with ``mode=ro``; PostgreSQL sessions
start with ``default_transaction_read_only``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import optuna
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from search.storage.resilient import ResilientRDBStorage
from search.storage.retry import permanent_problem

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 60
# Tries to open a store while another process is opening it too (see _opened_despite_races).
OPEN_RACE_ATTEMPTS = 8
# PostgreSQL: how long to wait for a connection, unless the URL (``?connect_timeout=S``) or
# ``PGCONNECT_TIMEOUT`` says otherwise. An unreachable server is reported after this, not a hang.
CONNECT_TIMEOUT_S = 10
# PostgreSQL: one pooled connection a process (a worker's loop and its heartbeat thread take turns
# on it; a worker's calls are milliseconds between minutes of training), and a few more opened
# only while two threads need one at once, closed when given back (bench/scale.py counts them).
POOL_SIZE = 1
POOL_OVERFLOW = 4
# Query parameters of a URL that carry a secret (libpq accepts ``?password=``).
SECRET_QUERY_KEYS = ("password", "sslpassword")


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line for the user."""


def store_failed(exc: BaseException) -> StoreError:
    """A store that failed past its retries (``storage.retry``), or at once where waiting does not
    help (a full disk, a read-only file), as one line for the user."""
    cause = exc.__cause__ or exc
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    advice = permanent_problem(exc)
    if advice is not None:
        return StoreError(f"the store failed: {first}; {advice}")
    return StoreError(f"the store failed and did not come back: {first}")


class MissingStore(StoreError):
    """A SQLite store's file does not exist (and was not to be created)."""


def _mask_query(url: str) -> str:
    return re.sub(rf"(?i)(\b(?:{'|'.join(SECRET_QUERY_KEYS)})=)[^&#]*", r"\1***", url)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print or store): the one after
    ``user:`` and a ``password=`` query parameter. A malformed URL is masked the same way, by
    pattern, so that an error message about it shows no secret either."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        prefix, at, rest = url.rpartition("@")
        if at:  # best effort: whatever lies between the user's ":" and the last "@" is hidden
            start = prefix.find("//") + 2 if "//" in prefix else 0
            colon = prefix.find(":", start)
            if colon != -1:
                url = f"{prefix[:colon + 1]}***@{rest}"
        return _mask_query(url)
    hidden = {k: "***" for k in parsed.query if k.lower() in SECRET_QUERY_KEYS}
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    if parsed.password is None and not hidden:
        return url
    masked = parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if sep and authority.count("@") > 1 and parsed.password is not None:
        # An unencoded "@" in the password: SQLAlchemy splits at the first one, so the part
        # after it would show as the host. Mask up to the last "@" of the authority instead.
        user = authority.split(":", 1)[0]
        masked = _mask_query(f"{scheme}://{user}:***@{rest[authority.rindex('@') + 1:]}")
    return masked


def _engine_kwargs(url: str, read_only: bool = False) -> dict:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if read_only and path is not None:  # a connection that cannot write the file
            from urllib.parse import quote

            ro_uri = f"file:{quote(path)}?mode=ro"
            return {"creator": lambda: sqlite3.connect(ro_uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S,
                                                        check_same_thread=False)}
        # isolation_level=None: pysqlite emits no BEGIN of its own; _begin_immediate does.
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}}
    if backend == "postgresql":
        given = "connect_timeout" in make_url(url).query or os.environ.get("PGCONNECT_TIMEOUT")
        connect_args = {} if given else {"connect_timeout": CONNECT_TIMEOUT_S}
        if read_only:
            connect_args["options"] = "-c default_transaction_read_only=on"
        return {"pool_pre_ping": True, "connect_args": connect_args, "pool_size": POOL_SIZE,
                "max_overflow": POOL_OVERFLOW}
    return {"pool_pre_ping": True}


def sqlite_path(url: str) -> str | None:
    """The absolute path of a SQLite store's file (None: not SQLite, in memory, or a URI)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") \
            or parsed.database.startswith("file:"):
        return None
    return os.path.abspath(parsed.database)


def _guard_missing_file(engine: sqlalchemy.engine.Engine, path: str) -> None:
    """SQLite creates an empty database where a file is missing. A store whose file went away
    (a moved file, an unmounted share) must not be replaced by an empty one: a new connection to
    a missing file fails instead, as a transient error that the store's retries ride out until
    the file is back."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):
        if not os.path.exists(path):
            raise sqlite3.OperationalError(f"unable to open database file: the store file {path} "
                                           "is missing")


def _reopen_after_unwritable(engine: sqlalchemy.engine.Engine) -> None:
    """A SQLite connection opened while its file could not be written stays read-only after the
    file is writable again (SQLite falls back to read-only at open): a connection that met an
    unwritable store is dropped from the pool, so the next try opens the file anew."""

    @event.listens_for(engine, "handle_error")
    def _unwritable(context):
        if permanent_problem(context.original_exception) is not None:
            context.is_disconnect = True  # this connection only, not the whole pool
            context.invalidate_pool_on_disconnect = False


def _hint(reason: str) -> str:
    """What to do about a store that cannot be opened, from the driver's message."""
    text = reason.lower()
    if "password authentication failed" in text or "no password supplied" in text \
            or "authentication failed" in text:
        return ("check the user and password (the URL, SEARCH_STORAGE, ~/.pgpass or the "
                "service file)")
    if "does not exist" in text and "database" in text:
        return "create the database or fix its name in the URL"
    if any(s in text for s in ("timeout", "timed out", "connection refused", "could not translate",
                               "no route", "name or service not known", "network is unreachable",
                               "could not connect", "connection failed")):
        return ("check that the server is running and reachable from here (host, port, "
                "firewall); ?connect_timeout=SECONDS in the URL sets how long to wait")
    if "failed to import db access module" in text or "can't load plugin" in text:
        return "use sqlite:///FILE or postgresql://... (pip install -e \".[postgres]\")"
    if "unable to open database file" in text:
        return "check that the folder exists and is writable"
    return "check --storage or SEARCH_STORAGE"


def _use_wal(url: str) -> None:
    """Switch a SQLite file to WAL; the mode is persistent in the file, so once is enough."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    engine = sqlalchemy.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()


def _begin_immediate(engine: sqlalchemy.engine.Engine) -> None:
    """Start every transaction on a SQLite engine with BEGIN IMMEDIATE (takes the write lock)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _lost_open_race(exc: BaseException) -> bool:
    """True when opening a new store lost a race with another process opening it too: Optuna's
    first ``create_all`` found the tables made meanwhile (SQLite: ``table ... already exists``;
    PostgreSQL: a duplicate key in its catalogue, or the version row inserted twice), or SQLite
    refused the switch to WAL while the other held the file (``database is locked``, which that
    switch reports at once instead of waiting)."""
    text = str(exc).lower()
    return (isinstance(exc, IntegrityError)
            or any(part in text for part in ("already exists", "duplicate key", "database is locked")))


def _opened_despite_races(fn: Callable[[], T]) -> T:
    """``fn()``, again after a short pause while it loses an opening race (two ``search start`` of
    a new study on one new store): by the next try the tables are there and the file is in WAL."""
    for attempt in range(OPEN_RACE_ATTEMPTS):
        try:
            return fn()
        except SQLAlchemyError as exc:
            if attempt == OPEN_RACE_ATTEMPTS - 1 or not _lost_open_race(exc):
                raise
            time.sleep(min(0.1 * 2 ** attempt, 2.0))
    raise AssertionError("unreachable")


# Tables every Optuna RDB store has (any schema version since 1.0).
OPTUNA_TABLES = {"version_info", "studies"}


def _refuse_foreign(url: str, read_only: bool = False) -> bool:
    """Whether the store holds Optuna's tables; a database that holds tables and none of Optuna's
    is someone else's: refused before anything is written to it (Optuna would add its tables
    beside theirs, and SQLite's file would be switched to WAL)."""
    path = sqlite_path(url)
    if path is not None and not os.path.exists(path):
        return False  # a new file: made here
    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url, read_only))
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if tables and not tables & OPTUNA_TABLES:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(f"the store {mask_url(url)} is not an Optuna store (it holds other tables: "
                         f"{shown}): give a new file or an empty database; nothing was changed")
    return bool(tables)


def _schema_problem(exc: RuntimeError, url: str) -> StoreError | None:
    """Optuna's refusal of a store whose tables another Optuna version set up, as one line."""
    text = str(exc)
    if "table schema" not in text:
        return None
    first = text.split(". Please", 1)[0].strip()
    return StoreError(f"cannot open the store {mask_url(url)}: {first}: use the Optuna version that "
                      "made it, or back it up and run `optuna storage upgrade --storage URL`; "
                      "nothing was changed")


def _new_storage(url: str, read_only: bool = False, **kwargs) -> ResilientRDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return ResilientRDBStorage(url, engine_kwargs=_engine_kwargs(url, read_only),
                                   skip_table_creation=read_only, **kwargs)


def open_storage(url: str, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 on_stale_trial=None, must_exist: bool = False,
                 read_only: bool = False) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for ``url``.

    ``heartbeat_interval``, ``grace_period`` and ``on_stale_trial`` are Optuna's heartbeat
    settings (``heartbeat_stale_trial_callback``): a RUNNING trial whose heartbeat is older than
    the grace period is failed by ``optuna.storages.fail_stale_trials`` and handed to the callback.
    ``must_exist``: a SQLite store's file must exist already (raises :class:`MissingStore`, and
    no empty file is created); only ``search start`` creates a store. ``read_only``: the store
    must exist and nothing is written to it (see the module's notes); a database that holds no
    Optuna tables is one :class:`StoreError`.
    """
    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        what = ("its port is not a number (expected e.g. postgresql://user@host:5432/db)"
                if isinstance(exc, ValueError) else
                "expected e.g. sqlite:///search.db or postgresql://user@host/db")
        raise StoreError(f"malformed storage URL {mask_url(url)!r}: {what}") from None
    path = sqlite_path(url)
    if (must_exist or read_only) and path is not None and not os.path.exists(path):
        raise MissingStore(f"no store at {mask_url(url)}: the file {path} does not exist")
    if read_only:
        return _read_only_storage(url, path)
    try:
        _refuse_foreign(url)
        _opened_despite_races(lambda: _use_wal(url))
        store = _opened_despite_races(lambda: _new_storage(
            url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            heartbeat_stale_trial_callback=on_stale_trial))
        _begin_immediate(store.engine)
        if path is not None:
            _guard_missing_file(store.engine, path)
            _reopen_after_unwritable(store.engine)
        return store
    except RuntimeError as exc:  # Optuna's schema version check
        problem = _schema_problem(exc, url)
        if problem is None:
            raise
        raise problem from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as exc:
        raise _cannot_open(url, exc) from None


def _read_only_storage(url: str, path: str | None) -> optuna.storages.RDBStorage:
    """An existing store opened so that nothing can be written to it (``open_storage``)."""
    try:
        if not _refuse_foreign(url, read_only=True):  # other tables are refused in there
            raise MissingStore(f"no store at {mask_url(url)} yet: the database holds no tables "
                               "(`search start` makes them; check --storage or SEARCH_STORAGE)")
        store = _new_storage(url, read_only=True)
    except RuntimeError as exc:  # Optuna's schema check (a store to upgrade)
        raise (_schema_problem(exc, url) or _cannot_open(url, exc)) from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as exc:
        raise _cannot_open(url, exc) from None
    if path is not None:
        _guard_missing_file(store.engine, path)
    return store


def _cannot_open(url: str, exc: BaseException) -> StoreError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(f"cannot open the store {mask_url(url)}: {reason.rstrip('.')}; {_hint(reason)}")


def enable_heartbeat(store: optuna.storages.RDBStorage, interval: int, grace: int,
                     on_stale_trial=None) -> None:
    """Give an open store Optuna's heartbeat settings (as ``open_storage``'s arguments do):
    one store per process serves reading and working alike."""
    if interval <= 0 or grace <= 0:
        raise ValueError("the heartbeat interval and the grace period must be positive")
    store.heartbeat_interval = interval
    store.grace_period = grace
    store.heartbeat_stale_trial_callback = store.failed_trial_callback = on_stale_trial


def url_of(store: optuna.storages.RDBStorage) -> str:
    """The URL an open store was made from, password included (never print it: :func:`mask_url`)."""
    return store.engine.url.render_as_string(hide_password=False)


def free_connections(engine: sqlalchemy.engine.Engine) -> int | None:
    """PostgreSQL: how many more client connections the server accepts (``max_connections`` less
    the reserved ones and those open now); None for other stores (no such limit)."""
    if engine.dialect.name != "postgresql":
        return None
    query = sqlalchemy.text(
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
        " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')")
    try:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    except SQLAlchemyError:  # a role that may not read the settings: no bound from the store
        return None


def pgpass_escape(value: str) -> str:
    """A field of a libpq password file (``\\`` and ``:`` escaped with ``\\``)."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def without_password(url: str) -> tuple[str, str | None, str | None]:
    """``url`` with its password taken out, the password, and the password file line
    (``host:port:database:user:password``, libpq's ``PGPASSFILE`` format) that gives it back to
    a client of the URL without it. A URL with no password comes back as it is, with two Nones."""
    parsed = make_url(url)
    secret = parsed.password
    query_secret = next((v for k, v in parsed.query.items() if k.lower() == "password"), None)
    secret = secret if secret is not None else query_secret
    if secret is None:
        return url, None, None
    if isinstance(secret, tuple):
        secret = secret[0]
    plain = sqlalchemy.engine.URL.create(
        parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
        {k: v for k, v in parsed.query.items() if k.lower() != "password"})
    line = ":".join(pgpass_escape(str(part)) for part in (
        plain.host or "localhost", plain.port or 5432, plain.database or plain.username or "*",
        plain.username or "*", secret))
    return plain.render_as_string(hide_password=False), str(secret), line
