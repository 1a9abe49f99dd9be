"""Ride out a store that is briefly unreachable: a restarted PostgreSQL server, a locked SQLite file.

``pool_pre_ping`` replaces a dead pooled connection when it is checked out, but a statement that
was in flight when the server went away still fails, and so does every new connection until the
server is back. Those errors are transient: the same operation is retried with a growing pause
for up to ``RETRY_SECONDS``. Everything else (integrity errors, bad SQL, Optuna's own errors about
finished trials) is raised at once.

A store that cannot be written (a full disk, an immutable or read-only file:
:data:`PERMANENT_ERRORS`) does not mend by itself, so outside a study's run it is raised at once
with what to do. Inside a running study (:func:`waiting_for_writable`: the workers and the pool
that runs them) it is waited out for up to ``WRITABLE_WAIT_SECONDS``, with one warning saying what
to do: once someone frees space or makes the file writable again, the same writes go through and
the study goes on to its exact budget, nothing lost and nothing to rerun.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

import optuna
from sqlalchemy import exc as sa_exc

T = TypeVar("T")

# How long an operation keeps retrying before the error is raised: long enough for a server
# restart or a failover, short enough that a store gone for good is reported.
RETRY_SECONDS = float(os.environ.get("SEARCH_STORE_RETRY_SECONDS", "120"))
# How long a running study waits for a store that cannot be written to become writable again.
WRITABLE_WAIT_SECONDS = float(os.environ.get("SEARCH_STORE_WRITABLE_WAIT_SECONDS", "900"))
FIRST_PAUSE_S = 0.2
MAX_PAUSE_S = 5.0
# SQLite errors that waiting does not mend (SQLite raises them as OperationalError, like a locked
# file): the message fragment, and what to do about it.
PERMANENT_ERRORS = {
    "database or disk is full": "its disk is full: free space on the store's filesystem",
    "readonly database": ("it cannot be written: make the store file and its folder writable "
                          "(SQLite writes FILE-wal and FILE-shm beside it) and not immutable "
                          "(chattr -i)"),
    "disk i/o error": ("its file cannot be read or written (disk I/O error): check that the file, "
                       "its -wal and -shm files and its folder are writable and not immutable "
                       "(chattr -i), and that the disk is healthy"),
}

_log = logging.getLogger("search.storage")


def permanent_problem(exc: BaseException) -> str | None:
    """What to do about a store error that waiting does not mend (see :data:`PERMANENT_ERRORS`)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).lower()
        for fragment, advice in PERMANENT_ERRORS.items():
            if fragment in text:
                return advice
        exc = exc.__cause__ or exc.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    """True for a lost or refused connection and for SQLite's ``database is locked``; never for a
    full disk or a file that cannot be written (:func:`permanent_problem`)."""
    if permanent_problem(exc) is not None:
        return False
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return True
        if isinstance(exc, sa_exc.DisconnectionError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# How the waiting starts and ends in a worker's log (a pool relays them: search.execution.pool).
UNWRITABLE = "the store cannot be written"
WRITABLE_AGAIN = "the store can be written again"
_waiting_for_writable = 0  # > 0 while a study runs in this process (waiting_for_writable)


@contextmanager
def waiting_for_writable():
    """While inside: :func:`retrying` waits for a store that cannot be written (see the module's
    notes) instead of raising at once."""
    global _waiting_for_writable
    _waiting_for_writable += 1
    try:
        yield
    finally:
        _waiting_for_writable -= 1


def retrying(fn: Callable[[], T], what: str = "store operation",
             budget_s: float | None = None) -> T:
    """``fn()``, retried while it fails with a transient store error, for up to ``budget_s``;
    inside :func:`waiting_for_writable`, also while the store cannot be written, for up to
    ``WRITABLE_WAIT_SECONDS``."""
    budget_s = RETRY_SECONDS if budget_s is None else budget_s
    deadline = time.monotonic() + budget_s
    pause = FIRST_PAUSE_S
    attempt = 0
    unwritable_since = None
    while True:
        try:
            result = fn()
        except (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            now = time.monotonic()
            problem = permanent_problem(exc)
            if problem is not None and _waiting_for_writable:
                if unwritable_since is None:
                    unwritable_since = now
                    _log.warning("%s (%s: %s): %s; waiting up to %.0f s for it, and the study "
                                 "goes on once it can", UNWRITABLE, what,
                                 _first_line(exc), problem, WRITABLE_WAIT_SECONDS)
                if now - unwritable_since + pause > WRITABLE_WAIT_SECONDS:
                    raise
            elif not is_transient(exc) or now + pause > deadline:
                raise
            attempt += 1
            if attempt == 1 and problem is None:
                _log.warning("the store is unreachable (%s); retrying for up to %.0f s",
                             what, budget_s)
        else:
            if unwritable_since is not None:
                _log.warning("%s (%s, after %.0f s): the study goes on", WRITABLE_AGAIN,
                             what, time.monotonic() - unwritable_since)
            return result
        time.sleep(pause)
        pause = min(MAX_PAUSE_S, pause * 2)


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    orig = getattr(cause, "orig", None) or cause
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def retried(method):
    """Decorator: run the method through :func:`retrying`."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return retrying(lambda: method(*args, **kwargs), method.__name__)

    return wrapper
