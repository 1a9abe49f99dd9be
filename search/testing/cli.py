"""The ``search`` command as a user runs it, for the tests: in a fresh process (:func:`run_cli`),
in the background (:func:`popen_cli`), and the error lines it wrote (:func:`error_lines`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The repository root (the project is installed in development mode: search/ is in it).
REPO = Path(__file__).resolve().parents[2]


def _env(env: dict | None) -> dict:
    """This process's environment without ``SEARCH_STORAGE``, updated with ``env``."""
    full_env = dict(os.environ)
    full_env.pop("SEARCH_STORAGE", None)
    full_env.update(env or {})
    return full_env


def run_cli(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run the ``search`` CLI in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True,
                          env=_env(env), cwd=cwd or REPO, timeout=timeout, check=False)


def popen_cli(*args, env=None) -> subprocess.Popen:
    """Start the ``search`` CLI in the background, as a user would in a terminal."""
    return subprocess.Popen([sys.executable, "-m", "search", *args], cwd=REPO, env=_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def error_lines(result) -> list[str]:
    """Every non-empty stderr line: the product's own only (the libraries' start-up chatter is
    filtered by ``search.logs``, so a test that counts lines sees any that leaks)."""
    return [line for line in result.stderr.splitlines() if line.strip()]
