"""Logging, configured once at each process's edge: the ``search`` command, a pool worker process.

Library code logs through ``logging.getLogger("search.<room>")`` and never prints; the edges send
those records to stderr as plain lines (warnings and errors by default). The edges are also quiet
about their libraries' start-up: Optuna's INFO lines, and the lines TensorFlow's native code
writes to stderr while it loads (absl's "All log messages before absl::InitializeLog()", "Could
not find cuda drivers"), which no environment variable reaches. ``--verbose`` (the
``SEARCH_VERBOSE`` variable, inherited by the workers) shows them all.

Neither library is imported here (``search --help`` stays instant): each is quietened as it is
first imported, by a finder on ``sys.meta_path`` that wraps that one import.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

VERBOSE_ENV = "SEARCH_VERBOSE"

# Lines native start-up code writes to stderr that say nothing to a user of this tool.
# In the note search._datasets gives when raw uint8 pixels reach a model's weights: a worker log
# line that holds it is that note, never why the worker died (search.execution.pool.crash_cause).
UNSCALED = "uint8 pixels 0..255"

STARTUP_NOISE = re.compile(
    r"absl::InitializeLog\(\)|cudart_stub\.cc|Could not find cuda drivers|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|"
    r"oneDNN custom operations are on|TF_ENABLE_ONEDNN_OPTS|This TensorFlow binary is optimized|"
    r"rebuild TensorFlow with the appropriate compiler flags|TF-TRT Warning|cpu_feature_guard\.cc"
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def configure_logging(level: int | None = None) -> None:
    """Send the ``search`` loggers' records to stderr, one plain line each, and quieten the
    libraries' start-up unless verbose (once per process)."""
    loud = verbose()
    logger = logging.getLogger("search")
    if any(getattr(h, "_search_edge", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._search_edge = True
    logger.addHandler(handler)
    logger.setLevel(level if level is not None else (logging.INFO if loud else logging.WARNING))
    logger.propagate = False
    if loud:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _on_import("optuna", after=_quiet_optuna)
    _on_import("tensorflow", around=filtered_stderr)


def _quiet_optuna(optuna) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


class filtered_stderr:
    """Collect what is written to file descriptor 2 (native code included) while inside, then
    pass on every line that is not :data:`STARTUP_NOISE`."""

    def __enter__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._file = tempfile.TemporaryFile()
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        kept = [line for line in text.splitlines(keepends=True) if not STARTUP_NOISE.search(line)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
        return False


def _on_import(name: str, *, after=None, around=None) -> None:
    """Run ``after(module)`` once ``name`` is imported, or its import inside ``around()``; at once
    if it already is."""
    if name in sys.modules:
        if after is not None:
            after(sys.modules[name])
        return
    if not any(isinstance(f, _FirstImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _FirstImport(name, after, around))


class _FirstImport(importlib.abc.MetaPathFinder):
    """Finds module ``name`` by the other finders and wraps its loading; it leaves
    ``sys.meta_path`` once the module is loaded (a ``find_spec`` alone, which loads nothing,
    keeps it in place)."""

    def __init__(self, name, after, around):
        self.name, self.after, self.around = name, after, around
        self._finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _WrappedLoader(spec.loader, self)
        return spec

    def loaded(self, module) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        if self.after is not None:
            self.after(module)


class _WrappedLoader(importlib.abc.Loader):
    def __init__(self, loader, finder: _FirstImport):
        self._loader, self._finder = loader, finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if self._finder.around is not None:
            with self._finder.around():
                self._loader.exec_module(module)
        else:
            self._loader.exec_module(module)
        self._finder.loaded(module)

    def __getattr__(self, attr):  # is_package, get_resource_reader, ... as the real loader
        return getattr(self._loader, attr)
