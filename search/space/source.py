"""A space file's source: read, checked and hashed without importing Keras, so every mistake in
the file's name, type or syntax is answered before the backend loads (``search.space.loader``
then executes it)."""

from __future__ import annotations

import hashlib
import os

from search.errors import SpaceError, one_line


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def read_source(path: str) -> str:
    """The text of the space file ``path`` (a UTF-8 byte-order mark dropped, as Python does)."""
    if not os.path.exists(path):
        raise SpaceError(f"space file {path} does not exist")
    if os.path.isdir(path) or not path.endswith(".py"):
        raise SpaceError(f"space file {path} is not a Python file (.py)")
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"space file {path} cannot be read: {one_line(exc)}") from None


def compile_source(source: str, path: str):
    """The space module's code object; a syntax error is one line naming the file and line."""
    try:
        return compile(source, path, "exec")
    except SyntaxError as exc:
        raise SpaceError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from None


def check_space_file(path: str) -> str:
    """Read and compile the space file (no Keras): its source, or one line saying what is wrong."""
    source = read_source(path)
    compile_source(source, path)
    return source
