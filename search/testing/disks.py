"""Disks that fail the way a store's disk can, for the tests: a small tmpfs (filled, a full disk)
and an immutable file (``chattr +i``). Each skips the test where this machine cannot make it (not
root, no tmpfs)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _run_or_skip(args: list[str], cannot: str) -> None:
    """Run ``args``; skip the test, saying it ``cannot`` and why, when it fails."""
    import pytest

    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"{cannot} here ({done.stderr.strip() or 'not root'})")


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` made a tmpfs of ``size`` (e.g. ``"8m"``) while inside; unmounted after."""
    folder.mkdir()
    _run_or_skip(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                 "cannot mount a small tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, chunk: int = 65536) -> Path:
    """Write a file in ``folder`` until its filesystem is full; returns the file (unlink it to
    free the space)."""
    filler = folder / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * chunk)
                f.flush()
    except OSError:  # ENOSPC: the disk is full
        pass
    return filler


@contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``path`` immutable (``chattr +i``) while inside, writable again after."""
    _run_or_skip(["chattr", "+i", str(path)], "cannot make a file immutable")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)
