"""search: a hyperparameter search service for Keras (Keras Tuner spaces, Optuna studies, many workers).

The Python API: :func:`start`, :func:`worker`, :func:`status`, :func:`analyze`, :func:`ablate`,
:func:`best` (see ``search.api``). Space modules use :mod:`search.data` (``search.data.current()``).
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the terminal (set before any backend is imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def start(*args, **kwargs):
    from search.api import start as _start

    return _start(*args, **kwargs)


def worker(*args, **kwargs):
    from search.api import worker as _worker

    return _worker(*args, **kwargs)


def status(*args, **kwargs):
    from search.api import status as _status

    return _status(*args, **kwargs)


def analyze(*args, **kwargs):
    # search.reports, not search.api: it reads the store only and imports no Keras
    from search.reports import analyze as _analyze

    return _analyze(*args, **kwargs)


def ablate(*args, **kwargs):
    from search.api import ablate as _ablate

    return _ablate(*args, **kwargs)


def best(*args, **kwargs):
    from search.api import best as _best

    return _best(*args, **kwargs)
