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

Only completed trials rank. A trial that was failed meanwhile (its worker stalled past the grace
period and the trial was retried elsewhere) keeps nothing: its late writer finds it finished and
changes neither the index, nor the files, nor the trial. An entry whose trial is running (its
worker between the upload and the tell) is left alone; one whose trial finished without
completing (a worker that died after its upload) is removed.

What the store says is checked before a file is touched: an artifact id is Optuna's (a UUID),
never a path, and a checkpoint is deleted only when the index and the trial's own artifact record
both name it, inside the artifact store's folder (or prefix).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
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
# The ids optuna.artifacts.upload_artifact makes (uuid4); anything else in the store is not ours.
_ARTIFACT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Optuna's record of a trial's artifact (a system attribute of the trial), by artifact id.
_ARTIFACT_META_PREFIX = "artifacts:"

_log = logging.getLogger("search.execution.checkpoints")


def is_artifact_id(value) -> bool:
    """Whether ``value`` is an artifact id as Optuna makes them (a UUID): never a path."""
    return isinstance(value, str) and _ARTIFACT_ID.fullmatch(value) is not None


class NotAnArtifactId(SearchError):
    """The store names something that is not an artifact id (a path, say)."""

    def __init__(self, artifact_id):
        super().__init__(f"{artifact_id!r} is not an artifact id (a UUID as Optuna makes them): "
                         "someone wrote it into the store; nothing was read or removed for it")


def _checked_id(artifact_id) -> str:
    if not is_artifact_id(artifact_id):
        raise NotAnArtifactId(artifact_id)
    return artifact_id


class PrefixedStore:
    """An artifact store whose ids live under ``prefix/`` in another store (an S3 key prefix)."""

    def __init__(self, store, prefix: str):
        self.store, self.prefix = store, prefix.strip("/")

    def _key(self, artifact_id: str) -> str:
        artifact_id = _checked_id(artifact_id)
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

    def _inside(self, artifact_id: str) -> str:
        """The id, once it is an id whose file lies inside the folder (no link leads out)."""
        _checked_id(artifact_id)
        root = os.path.realpath(self.location)
        if os.path.dirname(os.path.realpath(os.path.join(root, artifact_id))) != root:
            raise NotAnArtifactId(artifact_id)
        return artifact_id

    def open_reader(self, artifact_id: str):
        return super().open_reader(self._inside(artifact_id))

    def write(self, artifact_id: str, content_body) -> None:
        os.makedirs(self.location, exist_ok=True)
        super().write(self._inside(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        super().remove(self._inside(artifact_id))


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
        """Every entry of the index, best first (removed ones left out), whatever its trial's
        state: :meth:`standing` tells which count."""
        attrs = self.storage.get_study_system_attrs(self.study_id)
        entries = []
        for key, v in attrs.items():
            if not key.startswith(INDEX_PREFIX) or not v:
                continue
            try:
                entries.append(Ranked(int(key[len(INDEX_PREFIX):]), float(v["value"]),
                                      v.get("artifact_id")))
            except (TypeError, ValueError, KeyError):  # not an entry this module wrote
                _log.warning("checkpoint index entry %s is malformed: ignored", key)
        entries.sort(key=lambda r: (-r.value if self.maximize else r.value, r.number))
        return entries

    def _trial(self, number: int) -> optuna.trial.FrozenTrial | None:
        try:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        except KeyError:
            return None
        return self.storage.get_trial(trial_id)

    def standing(self) -> tuple[list[Ranked], list[Ranked], dict]:
        """The index read against the trials: (entries of completed trials, best first; entries
        whose trial finished without completing or does not exist, which hold no place; trial
        number -> its trial). Entries of running trials are in neither list: their worker has
        uploaded and not told yet."""
        complete, stale, trials = [], [], {}
        for r in self.ranked():
            trial = trials[r.number] = self._trial(r.number)
            if trial is None or (trial.state.is_finished() and trial.state != TrialState.COMPLETE):
                stale.append(r)
            elif trial.state == TrialState.COMPLETE:
                complete.append(r)
        return complete, stale, trials

    def _set(self, number: int, entry: dict | None) -> None:
        self.storage.set_study_system_attr(self.study_id, f"{INDEX_PREFIX}{number}", entry)

    def ranks(self, value: float) -> bool:
        """Whether a trial scoring ``value`` enters the current top K (of completed trials)."""
        complete = self.standing()[0]
        if len(complete) < self.keep:
            return True
        kth = complete[self.keep - 1].value
        return value > kth if self.maximize else value < kth

    # The worker's side --------------------------------------------------------------------

    def keep_trial(self, trial: optuna.Trial, outcome) -> None:
        """Before the trial is told: upload the best-epoch weights of a completed trial that ranks
        in the top K and rank it. Never raises for the artifact store: a failed write marks the
        checkpoint missing, and the trial's result is stored all the same. A trial already
        finished (failed for a stale heartbeat while it ran: its retry stands) keeps nothing and
        changes nothing."""
        if self.keep <= 0 or outcome.state != TrialState.COMPLETE or outcome.value is None:
            return
        if self.storage.get_trial(trial._trial_id).state.is_finished():
            return  # a late result: the index, the files and the trial stay as they are
        if not self.ranks(outcome.value):
            return
        try:
            self._keep(trial, outcome)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Failed while this was being written: undo what was written for it (its own entry
            # and file only), and leave the rest to the workers of completed trials.
            self._undo(trial)

    def _keep(self, trial: optuna.Trial, outcome) -> None:
        """Raises ``UpdateFinishedTrialError`` (and writes nothing that stays) when the trial is
        finished before its checkpoint is recorded on it."""
        number = trial.number
        entry = {"value": float(outcome.value), "epoch": outcome.attrs.get(trial_attrs.BEST_EPOCH)}
        if outcome.save_weights is None:
            problem = outcome.checkpoint_problem or "no best-epoch weights"
            trial.set_user_attr(trial_attrs.CHECKPOINT, {"state": "missing", "reason": problem})
            self._set(number, dict(entry, artifact_id=None))
            return
        try:
            with tempfile.TemporaryDirectory(prefix="search-checkpoint-") as folder:
                path = os.path.join(folder, f"trial_{number}.weights.npz")
                outcome.save_weights(path)
                size = os.path.getsize(path)
                # Optuna records the artifact on the trial first: a finished trial refuses it
                # before any file is written.
                artifact_id = upload_artifact(artifact_store=self.store, file_path=path,
                                              study_or_trial=trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise
        except Exception as exc:  # noqa: BLE001  (a full disk, a bucket out of reach: the trial still counts)
            reason = f"the checkpoint could not be written to {self.location}: {one_line(exc)}"
            _log.warning("trial %d: %s", number, reason)
            self._remove_partial(trial)
            trial.set_user_attr(trial_attrs.CHECKPOINT, {"state": "missing", "reason": reason})
            self._set(number, dict(entry, artifact_id=None))
            return
        self._set(number, dict(entry, artifact_id=artifact_id))  # first: settle() can then drop it
        trial.set_user_attr(trial_attrs.CHECKPOINT, {"state": "saved", "artifact_id": artifact_id,
                                              "filename": os.path.basename(path), "bytes": size,
                                              "epoch": entry["epoch"], "store": self.location})

    def _undo(self, trial: optuna.Trial) -> None:
        """What :meth:`_keep` wrote for a trial that was finished meanwhile: its file and its entry."""
        try:
            entry = self.storage.get_study_system_attrs(self.study_id).get(f"{INDEX_PREFIX}{trial.number}")
            if entry:
                self._drop(Ranked(trial.number, float(entry["value"]), entry.get("artifact_id")))
        except Exception as exc:  # noqa: BLE001  (never lose a worker over housekeeping)
            _log.warning("trial %d: its checkpoint entry was not removed: %s", trial.number, one_line(exc))

    def _remove_partial(self, trial: optuna.Trial) -> None:
        """Remove what a failed upload may have left (its meta is recorded before the write)."""
        with contextlib.suppress(Exception):
            for meta in optuna.artifacts.get_all_artifact_meta(trial):
                with contextlib.suppress(Exception):
                    self.store.remove(meta.artifact_id)

    def settle(self, number: int, told: bool) -> None:
        """After the trial is told: drop its checkpoint if it was not stored as complete (a stale
        heartbeat failed it meanwhile), the entries of trials that finished without completing,
        and every checkpoint of a completed trial beyond the top K. Entries of running trials
        hold no place and are left alone, so a stalled worker's result never pushes a kept
        checkpoint out."""
        if self.keep <= 0:
            return
        try:
            complete, stale, _ = self.standing()
            drop = stale + complete[self.keep:]
            if not told:
                drop += [r for r in complete[:self.keep] if r.number == number]
            for r in drop:
                self._drop(r)
        except Exception as exc:  # noqa: BLE001  (never lose a worker over housekeeping; the next one retries)
            _log.warning("checkpoints beyond the best %d not removed yet: %s", self.keep, one_line(exc))

    def discard(self, trial: optuna.trial.FrozenTrial) -> None:
        """What a trial that will not complete left (its worker died after the upload, before the
        tell): the files its own artifact records name, and its index entry."""
        try:
            for key in trial.system_attrs:
                artifact_id = key[len(_ARTIFACT_META_PREFIX):]
                if key.startswith(_ARTIFACT_META_PREFIX) and is_artifact_id(artifact_id):
                    with contextlib.suppress(ArtifactNotFound, FileNotFoundError):
                        self.store.remove(artifact_id)
            if f"{INDEX_PREFIX}{trial.number}" in self.storage.get_study_system_attrs(self.study_id):
                self._set(trial.number, None)
        except Exception as exc:  # noqa: BLE001  (never lose a worker over housekeeping)
            _log.warning("trial %d: its checkpoint was not removed: %s", trial.number, one_line(exc))

    def tidy(self) -> None:
        """At the end of a study: every entry of a trial that finished without completing, and
        every checkpoint beyond the top K, removed (:meth:`settle` with no trial of its own)."""
        self.settle(-1, told=True)

    def _drop(self, ranked: Ranked) -> None:
        """Remove an entry from the index, and its file when the entry and the trial's own
        artifact record both name it as an artifact id."""
        if ranked.artifact_id is not None:
            trial = self._trial(ranked.number)
            recorded = trial is not None and \
                f"{_ARTIFACT_META_PREFIX}{ranked.artifact_id}" in trial.system_attrs
            if is_artifact_id(ranked.artifact_id) and recorded:
                with contextlib.suppress(ArtifactNotFound, FileNotFoundError):
                    self.store.remove(ranked.artifact_id)
            else:
                _log.warning("checkpoint index entry of trial %d names %r, which is not an "
                             "artifact of that trial: no file removed", ranked.number,
                             ranked.artifact_id)
        self._set(ranked.number, None)

    # The reader's side --------------------------------------------------------------------

    def artifact_ids(self) -> dict[int, str | None]:
        """Trial number -> artifact id of its kept checkpoint (None: missing, or the store names
        something that is not an artifact id)."""
        return {r.number: r.artifact_id if is_artifact_id(r.artifact_id) else None
                for r in self.ranked()}

    def download(self, artifact_id: str, path: str) -> None:
        """The checkpoint's file at ``path``; a missing artifact is one line for the user."""
        try:
            download_artifact(artifact_store=self.store, file_path=path,
                              artifact_id=_checked_id(artifact_id))
        except ArtifactNotFound:
            raise SearchError(f"checkpoint {artifact_id} is not in the artifact store {self.location}: "
                              "was the store moved? (search start --artifacts)") from None
