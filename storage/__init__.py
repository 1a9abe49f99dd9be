"""The study store: Optuna's RDB storage set up for many processes, plus the project's own tables.

This package imports nothing from ``search``.
"""

from storage.engine import DEFAULT_URL, MissingStore, StoreError, mask_url, open_storage, resolve_url
from storage.records import StudyRecord, StudyRecords
from storage.retry import is_transient, retrying
from storage.workers import WorkerRegistry, WorkerRow

__all__ = [
    "DEFAULT_URL",
    "MissingStore",
    "StoreError",
    "StudyRecord",
    "StudyRecords",
    "WorkerRegistry",
    "WorkerRow",
    "is_transient",
    "mask_url",
    "open_storage",
    "resolve_url",
    "retrying",
]
