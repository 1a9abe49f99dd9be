"""search: a hyperparameter search service for Keras (Keras Tuner spaces, Optuna studies, many workers).

The public API (``search.api``), for notebooks and scripts::

    import search
    search.start("spaces/cnn.py", trials=4, epochs=5)
    search.analyze("cnn").write_html("cnn.html")

:func:`start`, :func:`worker`, :func:`slurm`, :func:`status`, :func:`analyze`, :func:`ablate`,
:func:`best`
and their result types are loaded on first use (``import search`` stays light: space modules
import :mod:`search.data` and :mod:`search.blocks` from it).
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the terminal (set before any backend is imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "start": "search.api",
    "worker": "search.api",
    "slurm": "search.api",
    "status": "search.api",
    "analyze": "search.api",
    "ablate": "search.api",
    "best": "search.api",
    "StartResult": "search.api",
    "Tuner": "search.commands.tuner",
    "SearchError": "search.errors",
    "StudySnapshot": "search.study",
    "WorkerReport": "search.execution.pool",
    "StudyAnalysis": "search.commands.analyze",
    "AblationQueued": "search.commands.ablate",
    "BestTrials": "search.commands.best",
    "TopTrial": "search.commands.best",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
