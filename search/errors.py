"""Errors the user can act on: the CLI prints their message as one line and exits non-zero."""


class SearchError(Exception):
    """A user-facing error; ``str(err)`` is one line that names what is wrong and what to do."""


class SpaceError(SearchError):
    """The space module cannot be loaded or used."""


class StudyStopped(SearchError):
    """The study was stopped (a Keras Tuner ``FatalError``, too many failed trials in a row): no
    worker starts a trial of it until a resume."""

    def __init__(self, study_name: str, reason: str):
        self.study_name, self.reason = study_name, reason
        super().__init__(f"study {study_name!r} stopped: {reason}")


class DataError(SearchError):
    """The data set cannot be found or read."""


class DownloadError(DataError):
    """Something a study needs (a data set, pre-trained weights) must be downloaded and cannot be."""


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` for an arbitrary exception."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {first}" if first else name
