"""Checkpoints: the best-epoch weights of a study's top trials, in an Optuna artifact store.

Where they go (``search start --artifacts``, stored with the study):

- nothing given: ``FileSystemArtifactStore`` in a folder next to a SQLite store
  (``search.db`` -> ``search-artifacts/``); a study in any other store (PostgreSQL, whose workers
  may sit on several machines) keeps no checkpoints unless it names a shared location;
- a folder: ``FileSystemArtifactStore`` there (a shared mount when workers sit on several machines);
- ``s3://bucket[/prefix]``: ``Boto3ArtifactStore`` (needs boto3; S3-compatible servers through
  boto3's own settings, e.g. ``AWS_ENDPOINT_URL``).

How the store stays bounded: a worker that completes a trial uploads its weights
(``optuna.artifacts.upload_artifact``, before the trial is told, while its attributes can still be
written) only when the trial ranks among the study's best ``keep_best`` (K) so far, and after
telling it removes the checkpoints that dropped out of the top K. The ranking lives in the study's
system attributes, one key per ranked trial (``search:checkpoint:<number>``), so a worker reads
one small row set instead of every trial, and workers never overwrite each other's keys. A key
whose value is null was removed. Every ranked trial also carries the user attribute
``checkpoint``: ``{"state": "saved", "artifact_id", ...}`` or ``{"state": "missing", "reason"}``
when its weights could not be written (a full disk, an unreachable bucket): the trial's result
is stored all the same and the worker goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from search import trial_attrs
from search.errors import SearchError, one_line
from search.storage import url_of

INDEX_PREFIX = "search:checkpoint:"

_log = logging.getLogger("search.execution.checkpoints")


class PrefixedStore:
    """An artifact store whose ids live under ``prefix/`` in another store (an S3 key prefix)."""

    def __init__(self, store, prefix: str):
        self.store, self.prefix = store, prefix.strip("/")

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def open_reader(self, artifact_id: str):
        return self.store.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body) -> None:
        self.store.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self._key(artifact_id))


NO_LOCATION = ("the study keeps no checkpoints: its store is not a SQLite file and it names no "
               "artifact store (search start --artifacts PATH|s3://BUCKET, a location every worker "
               "reaches)")


def default_location(storage_url: str) -> str | None:
    """The artifact folder of a study that named none: next to its SQLite file (``x.db`` ->
    ``x-artifacts``, absolute); None for any other store (no local folder is shared by workers)."""
    url = make_url(storage_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        db = Path(url.database).absolute()
        return str(db.with_name(f"{db.stem}-artifacts"))
    return None


def open_store(location: str):
    """The artifact store at ``location``: a folder or ``s3://bucket[/prefix]``."""
    if location.startswith("s3://"):
        try:
            import boto3  # noqa: F401  (Optuna's Boto3ArtifactStore needs it)
        except ImportError:
            raise SearchError(f"the artifact store {location} needs boto3: pip install boto3") from None
        from optuna.artifacts import Boto3ArtifactStore

        bucket, _, prefix = location[len("s3://"):].partition("/")
        return PrefixedStore(Boto3ArtifactStore(bucket), prefix)
    return _FolderStore(location)


class _FolderStore(FileSystemArtifactStore):
    """Optuna's file-system store that creates its folder on the first write (not on open, so
    reading a study never leaves an empty folder behind)."""

    def __init__(self, base_path: str):
        super().__init__(base_path)
        self.location = base_path

    def write(self, artifact_id: str, content_body) -> None:
        os.makedirs(self.location, exist_ok=True)
        super().write(artifact_id, content_body)


@dataclass
class Ranked:
    """One ranked trial of the checkpoint index."""

    number: int
    value: float
    artifact_id: str | None  # None: its weights are missing


class Checkpoints:
    """The top-K checkpoints of one study, as a worker (or ``search best``) sees them."""

    def __init__(self, storage: optuna.storages.RDBStorage, study_id: int, keep: int,
                 maximize: bool, location: str | None):
        self.storage, self.study_id, self.keep, self.maximize = storage, study_id, keep, maximize
        self.location = location or default_location(url_of(storage))
        self.disabled = NO_LOCATION if self.location is None else None
        if self.disabled:
            self.keep = 0
        self._store = None

    @classmethod
    def of(cls, storage, study_id: int, config) -> Checkpoints:
        return cls(storage, study_id, config.keep_best, config.direction == "max", config.artifacts)

    @property
    def store(self):
        if self._store is None:
            self._store = open_store(self.location)
        return self._store

    # The index ---------------------------------------------------------------------------

    def ranked(self) -> list[Ranked]:
        """Ranked trials, best first (removed ones left out)."""
        attrs = self.storage.get_study_system_attrs(self.study_id)
        entries = [Ranked(int(k[len(INDEX_PREFIX):]), float(v["value"]), v.get("artifact_id"))
                   for k, v in attrs.items() if k.startswith(INDEX_PREFIX) and v]
        entries.sort(key=lambda r: (-r.value if self.maximize else r.value, r.number))
        return entries

    def _set(self, number: int, entry: dict | None) -> None:
        self.storage.set_study_system_attr(self.study_id, f"{INDEX_PREFIX}{number}", entry)

    def ranks(self, value: float) -> bool:
        """Whether a trial scoring ``value`` enters the current top K."""
        ranked = self.ranked()
        if len(ranked) < self.keep:
            return True
        kth = ranked[self.keep - 1].value
        return value > kth if self.maximize else value < kth

    # The worker's side --------------------------------------------------------------------

    def keep_trial(self, trial: optuna.Trial, outcome) -> None:
        """Before the trial is told: upload the best-epoch weights of a completed trial that ranks
        in the top K and rank it. Never raises for the artifact store: a failed write marks the
        checkpoint missing, and the trial's result is stored all the same."""
        if self.keep <= 0 or outcome.state != TrialState.COMPLETE or outcome.value is None:
            return
        if not self.ranks(outcome.value):
            return
        try:
            self._keep(trial, outcome)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed for a stale heartbeat while it ran: its retry stands; settle() cleans up

    def _keep(self, trial: optuna.Trial, outcome) -> None:
        number = trial.number
        entry = {"value": float(outcome.value), "epoch": outcome.attrs.get(trial_attrs.BEST_EPOCH)}
        if outcome.save_weights is None:
            problem = outcome.checkpoint_problem or "no best-epoch weights"
            self._set(number, dict(entry, artifact_id=None))
            trial.set_user_attr(trial_attrs.CHECKPOINT, {"state": "missing", "reason": problem})
            return
        try:
            with tempfile.TemporaryDirectory(prefix="search-checkpoint-") as folder:
                path = os.path.join(folder, f"trial_{number}.weights.npz")
                outcome.save_weights(path)
                size = os.path.getsize(path)
                artifact_id = upload_artifact(artifact_store=self.store, file_path=path,
                                              study_or_trial=trial)
        except Exception as exc:  # noqa: BLE001  (a full disk, a bucket out of reach: the trial still counts)
            reason = f"the checkpoint could not be written to {self.location}: {one_line(exc)}"
            _log.warning("trial %d: %s", number, reason)
            self._remove_partial(trial)
            self._set(number, dict(entry, artifact_id=None))
            trial.set_user_attr(trial_attrs.CHECKPOINT, {"state": "missing", "reason": reason})
            return
        self._set(number, dict(entry, artifact_id=artifact_id))  # first: settle() can then drop it
        trial.set_user_attr(trial_attrs.CHECKPOINT, {"state": "saved", "artifact_id": artifact_id,
                                              "filename": os.path.basename(path), "bytes": size,
                                              "epoch": entry["epoch"], "store": self.location})

    def _remove_partial(self, trial: optuna.Trial) -> None:
        """Remove what a failed upload may have left (its meta is recorded before the write)."""
        with contextlib.suppress(Exception):
            for meta in optuna.artifacts.get_all_artifact_meta(trial):
                with contextlib.suppress(Exception):
                    self.store.remove(meta.artifact_id)

    def settle(self, number: int, told: bool) -> None:
        """After the trial is told: drop its checkpoint if it was not stored as complete (a stale
        heartbeat failed it meanwhile), and remove every checkpoint beyond the top K."""
        if self.keep <= 0:
            return
        try:
            ranked = self.ranked()
            drop = ranked[self.keep:]
            if not told:
                drop += [r for r in ranked[:self.keep] if r.number == number]
            for r in drop:
                self._drop(r)
        except Exception as exc:  # noqa: BLE001  (never lose a worker over housekeeping; the next one retries)
            _log.warning("checkpoints beyond the best %d not removed yet: %s", self.keep, one_line(exc))

    def _drop(self, ranked: Ranked) -> None:
        if ranked.artifact_id:
            with contextlib.suppress(ArtifactNotFound, FileNotFoundError):
                self.store.remove(ranked.artifact_id)
        self._set(ranked.number, None)

    # The reader's side --------------------------------------------------------------------

    def artifact_ids(self) -> dict[int, str | None]:
        """Trial number -> artifact id of its kept checkpoint (None: missing)."""
        return {r.number: r.artifact_id for r in self.ranked()}

    def download(self, artifact_id: str, path: str) -> None:
        """The checkpoint's file at ``path``; a missing artifact is one line for the user."""
        try:
            download_artifact(artifact_store=self.store, file_path=path, artifact_id=artifact_id)
        except ArtifactNotFound:
            raise SearchError(f"checkpoint {artifact_id} is not in the artifact store {self.location}: "
                              "was the store moved? (search start --artifacts)") from None
