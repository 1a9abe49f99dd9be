"""Logging, configured once at each process's edge: the ``search`` command, a pool worker process.

Library code logs through ``logging.getLogger("search.<room>")`` and never prints; the edges send
those records to stderr as plain lines (warnings and errors by default).
"""

from __future__ import annotations

import logging
import sys


def configure_logging(level: int = logging.WARNING) -> None:
    """Send the ``search`` loggers' records to stderr, one plain line each (once per process)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger = logging.getLogger("search")
    if any(getattr(h, "_search_edge", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._search_edge = True
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
