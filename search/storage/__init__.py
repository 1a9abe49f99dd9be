"""The study store: Optuna's RDB storage set up for many processes, plus the project's own tables.

It takes a resolved URL (``search.options.resolve_storage`` resolves ``--storage`` and
``SEARCH_STORAGE``) and imports nothing from the rest of ``search``.
"""

from search.storage.engine import (
    MissingStore,
    StoreError,
    enable_heartbeat,
    free_connections,
    mask_url,
    open_storage,
    store_failed,
    url_of,
    without_password,
)
from search.storage.records import StudyRecord, StudyRecords
from search.storage.resilient import set_user_attrs
from search.storage.retry import is_transient, retrying, waiting_for_writable
from search.storage.workers import WorkerRegistry, WorkerRow

__all__ = [
    "MissingStore",
    "StoreError",
    "StudyRecord",
    "StudyRecords",
    "WorkerRegistry",
    "WorkerRow",
    "enable_heartbeat",
    "free_connections",
    "is_transient",
    "mask_url",
    "open_storage",
    "retrying",
    "set_user_attrs",
    "store_failed",
    "url_of",
    "waiting_for_writable",
    "without_password",
]
