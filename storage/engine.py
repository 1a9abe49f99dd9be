"""Open Optuna's RDB storage with engine settings fit for several worker processes.

SQLite: WAL journal (readers never block the writer) and a busy timeout, so parallel workers
wait for the write lock instead of failing with ``database is locked``. Every transaction starts
with ``BEGIN IMMEDIATE`` (SQLAlchemy's documented pysqlite recipe): SQLite ignores Optuna's
``SELECT ... FOR UPDATE``, so without it two workers can both read a WAITING trial and both
claim it; with it the read and the claim of a transaction hold the write lock together.
PostgreSQL: a pool with pre-ping, so a restarted server is reconnected, and every operation retried
while the server is unreachable (``storage.resilient``).
"""

from __future__ import annotations

import os
import warnings

import optuna
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from storage.resilient import ResilientRDBStorage

DEFAULT_URL = "sqlite:///search.db"
SQLITE_BUSY_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line for the user."""


def resolve_url(url: str | None) -> str:
    """The storage URL in force: the explicit one, else ``$SEARCH_STORAGE``, else the default."""
    return url or os.environ.get("SEARCH_STORAGE") or DEFAULT_URL


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print or store)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<malformed storage URL>"
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def _engine_kwargs(url: str) -> dict:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        # isolation_level=None: pysqlite emits no BEGIN of its own; _begin_immediate does.
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}}
    if backend == "postgresql":
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {"pool_pre_ping": True}


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


def open_storage(url: str | None = None, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 on_stale_trial=None) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for ``url`` (resolved as :func:`resolve_url` does).

    ``heartbeat_interval``, ``grace_period`` and ``on_stale_trial`` are Optuna's heartbeat
    settings (``heartbeat_stale_trial_callback``): a RUNNING trial whose heartbeat is older than
    the grace period is failed by ``optuna.storages.fail_stale_trials`` and handed to the callback.
    """
    url = resolve_url(url)
    try:
        make_url(url)
    except ArgumentError:
        raise StoreError(
            f"malformed storage URL {mask_url(url)!r}: expected e.g. sqlite:///search.db "
            "or postgresql://user@host/db"
        ) from None
    try:
        _use_wal(url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            store = ResilientRDBStorage(
                url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=heartbeat_interval,
                grace_period=grace_period, heartbeat_stale_trial_callback=on_stale_trial)
        _begin_immediate(store.engine)
        return store
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot open the store {mask_url(url)}: {reason}") from None
