"""The first time this user runs a study's stored code unpinned, say so.

A command that executes the space source stored with a study (``search worker``, ``search best
--evaluate`` or ``--export``) runs whatever whoever can write to the store put there
(``search.execution.pins``). Run without ``--space FILE``, it says so once per store, study and
source: the line of :func:`first_use_note`, shown before anything is executed. What was seen is
kept in ``$XDG_CONFIG_HOME/search/trusted.json`` (default ``~/.config/search/trusted.json``): the
store's URL with its password masked, the study's name and the source's sha256, nothing else. A
file that cannot be read (corrupt, unreadable) counts as empty, one that cannot be written keeps
nothing: the line is shown again next time, and the command runs as it would.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TRUSTED_FILE = "trusted.json"


def trusted_path() -> Path:
    """Where the sources already run are remembered (the XDG config folder of this user)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "search" / TRUSTED_FILE


def store_identity(storage_url: str) -> str:
    """The store as remembered and shown: its URL with the password masked, a SQLite file's path
    made absolute (the same file from another folder is the same store)."""
    from sqlalchemy.engine import make_url

    from search.storage import mask_url

    try:
        url = make_url(storage_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            storage_url = url.set(database=os.path.abspath(url.database)).render_as_string(
                hide_password=False)
    except Exception:  # noqa: BLE001  (a URL SQLAlchemy cannot parse is remembered as given, masked)
        pass
    return mask_url(storage_url)


def _seen() -> list[dict]:
    try:
        entries = json.loads(trusted_path().read_text(encoding="utf-8")).get("seen", [])
    except (OSError, ValueError, AttributeError):  # missing, unreadable or not this file's JSON
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _remember(entries: list[dict]) -> None:
    path = trusted_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".trusted-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"seen": entries}, f, indent=1)
        os.replace(tmp, path)  # whole or not at all: two workers starting at once never corrupt it
    except OSError:  # a read-only home: nothing kept, the line comes again next time
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass


def first_use_note(storage_url: str, study_name: str, source: str) -> str | None:
    """The line to show before the stored ``source`` of ``study_name`` runs unpinned for the first
    time here; None when it ran before (the same store, study and source). Remembers it."""
    from search.space.source import source_sha256

    entry = {"store": store_identity(storage_url), "study": study_name,
             "sha256": source_sha256(source)}
    seen = _seen()
    if entry in seen:
        return None
    _remember([*seen, entry])
    return (f"running the space source stored in {entry['store']} for study {study_name!r} "
            f"(sha256 {entry['sha256'][:12]}) on this machine for the first time: whoever can write "
            "to that store chooses this code; pin it with --space FILE")
