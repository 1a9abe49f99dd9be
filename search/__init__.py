"""search: a hyperparameter search service for Keras (Keras Tuner spaces, Optuna studies, many workers).

The Python API: :func:`start`, :func:`worker`, :func:`status` (see ``search.api``). Space modules
use :mod:`search.data` (``search.data.current()``).
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
