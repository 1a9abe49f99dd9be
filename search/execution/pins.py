"""What a command that executes a study's stored code holds the study to, before it executes it.

Whoever can write to the store chooses what the study's workers execute (the space source), read
(the data: a CIFAR folder is Python pickles), write and delete (the artifact store and the
checkpoint index). Pinning covers each of them:

- ``--space FILE``: the stored source must be exactly FILE's;
- ``--data NAME_OR_PATH`` and ``--artifacts PATH|s3://...``: the stored data and artifact store
  must be these. With ``--space``, a study that reads a data *path* or keeps checkpoints in a
  location it names (not the folder beside a SQLite store, which follows from the URL given
  here) runs only once those are given too, so a pinned command never reads or writes where
  the store alone decided;
- the local workers of ``search start`` and of ``search worker`` with several slots are also
  given the hash of the configuration their coordinator checked (``--config-sha256``): a store
  changed after that check is refused by every worker process;
- the checkpoint index is checked where it is used (``search.execution.checkpoints``): artifact
  ids are UUIDs inside the artifact store, never paths.

Commands that execute stored code: ``search worker`` (and the local workers of ``search start``,
pinned to the file ``start`` loaded), ``search best --evaluate`` and ``--export`` (rebuild the
models). ``status``, ``analyze`` and ``ablate`` execute none (``ablate`` reads the stored
hyperparameters, which are data, and queues trials: the workers that run them are pinned or not
as they are started). Run unpinned, ``worker`` and ``best`` say so the first time for a store,
study and source (``search.execution.trust``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from search._datasets import DEFAULT_DATA, KERAS_DATASETS
from search.errors import SearchError
from search.options import StudyConfig, normalize_location
from search.storage import StudyRecord


def is_named_data(data: str) -> bool:
    """A data set the service knows by name (no path of the store's choosing is read)."""
    return data in (DEFAULT_DATA, *KERAS_DATASETS)


@dataclass
class Pins:
    """What to hold a study to; None: not pinned."""

    space_sha256: str | None = None
    space_from: str | None = None  # the --space file, to name it
    data: str | None = None  # --data as given
    artifacts: str | None = None  # --artifacts as given
    config_sha256: str | None = None  # a pool's workers: the configuration their coordinator checked

    @classmethod
    def of(cls, space: str | None = None, data: str | None = None,
           artifacts: str | None = None) -> Pins:
        """The pins of ``--space FILE``, ``--data`` and ``--artifacts`` (the file read here)."""
        from search.space.source import read_source, source_sha256

        sha256 = source_sha256(read_source(space)) if space is not None else None
        return cls(sha256, space, data, normalize_location(artifacts) if artifacts else None)

    @property
    def pinned(self) -> bool:
        return self.space_sha256 is not None

    def worker_options(self) -> dict[str, str]:
        """The ``search worker`` options that pin another process the same way (the space file by
        its absolute path), e.g. for each task of a Slurm job array."""
        options = {"--space": self.space_from and os.path.abspath(self.space_from),
                   "--data": self.data, "--artifacts": self.artifacts}
        return {option: value for option, value in options.items() if value is not None}

    def check(self, record: StudyRecord, storage_url: str) -> None:
        """Refuse, with one line and before anything is executed, a study that is not what the
        pins say."""
        from search.space.source import source_sha256

        name = record.study_name
        if self.space_sha256 is not None:
            stored = source_sha256(record.space_source)  # the source itself, not the hash beside it
            if stored != self.space_sha256:
                given = f"--space {self.space_from}" if self.space_from else \
                    "the space file it was started with"
                raise SearchError(
                    f"refusing to run study {name!r}: the space source stored with it "
                    f"(sha256 {stored[:12]}) is not {given} (sha256 {self.space_sha256[:12]}); "
                    "find out who changed the file or the study before running it")
        if self.config_sha256 is not None and record.config_sha256 != self.config_sha256:
            raise SearchError(f"refusing to run study {name!r}: its configuration changed in the "
                              "store after its coordinator checked it; find out who changed the "
                              "study before running it")
        config = StudyConfig.from_dict(record.config)
        self._check_data(name, config.data)
        self._check_artifacts(name, config.artifacts, storage_url)

    @property
    def _paths_pinned_by_space(self) -> bool:
        """With ``--space``, the stored paths must be pinned too, unless the whole configuration
        is (a coordinator checked them)."""
        return self.pinned and self.config_sha256 is None

    def _check_data(self, name: str, stored: str) -> None:
        if self.data is not None:
            if self.data != stored and os.path.abspath(self.data) != os.path.abspath(stored):
                raise SearchError(f"refusing to run study {name!r}: it reads its data from "
                                  f"{stored!r}, not --data {self.data}; find out who changed the "
                                  "study before running it")
        elif self._paths_pinned_by_space and not is_named_data(stored):
            raise SearchError(f"refusing to run study {name!r}: it reads its data from {stored!r}, "
                              "which --space does not cover: pass --data with that path to run it")

    def _check_artifacts(self, name: str, stored: str | None, storage_url: str) -> None:
        from search.execution.checkpoints import default_location

        where = stored or default_location(storage_url)
        if self.artifacts is not None:
            if self.artifacts != where:
                raise SearchError(f"refusing to run study {name!r}: it keeps its checkpoints in "
                                  f"{where or 'no artifact store'}, not --artifacts {self.artifacts}; "
                                  "find out who changed the study before running it")
        elif self._paths_pinned_by_space and stored is not None:
            raise SearchError(f"refusing to run study {name!r}: it writes and deletes checkpoints "
                              f"in {stored}, which --space does not cover: pass --artifacts with "
                              "that location to run it")
