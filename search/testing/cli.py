"""The ``search`` command as a user runs it, for the tests: in a fresh process (:func:`run_cli`),
in the background (:func:`popen_cli`), and the error lines it wrote (:func:`error_lines`)."""

from __future__ import annotations

import os
import signal
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


def _as_in_a_terminal() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python keeps it so (no
    # KeyboardInterrupt): tests run from a background job would then send Ctrl-C to a process
    # that cannot hear it. A command typed in a terminal hears it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_cli(*args, env=None) -> subprocess.Popen:
    """Start the ``search`` CLI in the background, as a user would in a terminal (Ctrl-C, i.e.
    SIGINT, heard even when the tests themselves run as a background job)."""
    return subprocess.Popen([sys.executable, "-m", "search", *args], cwd=REPO, env=_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_in_a_terminal)


def error_lines(result) -> list[str]:
    """Every non-empty stderr line: the product's own only (the libraries' start-up chatter is
    filtered by ``search.logs``, so a test that counts lines sees any that leaks)."""
    return [line for line in result.stderr.splitlines() if line.strip()]
