"""Open Optuna's RDB storage with engine settings fit for several worker processes.

SQLite: WAL journal (readers never block the writer) and a busy timeout, so parallel workers
wait for the write lock instead of failing with ``database is locked``.
PostgreSQL: a pool with pre-ping, so a restarted server is reconnected transparently.
"""

from __future__ import annotations

import os

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

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
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
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


def open_storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for ``url`` (resolved as :func:`resolve_url` does)."""
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
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot open the store {mask_url(url)}: {reason}") from None
