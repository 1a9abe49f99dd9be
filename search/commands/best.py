"""``search best``: the top trials, their kept checkpoints, test-split evaluation and export.

``--evaluate`` rebuilds each top trial's model from its stored parameters (the stored space
source, an ``optuna.trial.FixedTrial`` of the trial's parameters through the same bridge, the
study's data split by its seed with the trial's class subset), loads its best-epoch weights from
the artifact store, and evaluates it on the held-out TEST split, which no trial ever saw. The
metrics are recorded on the trial as the user attribute ``test_metrics`` (with ``test_samples``)
and returned. ``--export DIR`` writes ``trial_<n>.keras`` (the rebuilt model with the
checkpoint's weights) and ``trial_<n>.json`` (its configuration and metrics).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import trial_attrs
from search.console.format import param_value
from search.errors import SearchError, one_line
from search.execution.checkpoints import Checkpoints
from search.execution.pins import Pins
from search.execution.trust import first_use_note
from search.storage import url_of
from search.storage.trial_notes import note_on_trial
from search.study import StoredStudy, open_study

EVAL_BATCH_SIZE = 128


@dataclass
class TopTrial:
    rank: int
    number: int
    value: float
    params: dict
    metrics: dict                   # at the best epoch (validation and training)
    best_epoch: int | None
    epochs: int | None
    train_seconds: float | None
    tags: list[str]                 # "baseline", "ablation lr=0.01"
    checkpoint: str                 # "saved", "missing: <why>", "not kept"
    artifact_id: str | None = None
    test_metrics: dict | None = None
    test_samples: int | None = None
    exported: list[str] = field(default_factory=list)
    problem: str | None = None      # why it was not evaluated or exported

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BestTrials:
    study: str
    objective: str
    direction: str
    keep_best: int
    artifacts: str                  # where the checkpoints are
    trials: list[TopTrial]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"study": self.study, "objective": self.objective, "direction": self.direction,
                "keep_best": self.keep_best, "artifacts": self.artifacts,
                "trials": [t.to_dict() for t in self.trials], "notes": self.notes}


def _tags(trial: FrozenTrial) -> list[str]:
    tags = ["baseline"] if trial.user_attrs.get(trial_attrs.BASELINE) else []
    tag = trial.user_attrs.get(trial_attrs.ABLATION)
    if tag:
        tags.append(f"ablation of {tag.get('param')}: {param_value(tag.get('value'))}")
    return tags


FOREIGN_NO_CHECKPOINTS = "a plain Optuna study: search kept no checkpoints of it"


def _checkpoint_state(trial: FrozenTrial, kept: dict, keep: int,
                      disabled: str | None) -> tuple[str, str | None]:
    if kept.get(trial.number):
        return "saved", kept[trial.number]
    attr = trial.user_attrs.get(trial_attrs.CHECKPOINT) or {}
    if attr.get("state") == "missing":
        return f"missing: {attr.get('reason')}", None
    if disabled:
        return f"not kept ({disabled})", None
    if keep <= 0:
        return "not kept (the study keeps no checkpoints: --keep-best 0)", None
    return f"not kept (only the best {keep} are)", None


def top_trials(stored: StoredStudy, top: int, checkpoints: Checkpoints) -> list[TopTrial]:
    trials = stored.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    trials = [t for t in trials if t.value is not None]
    trials.sort(key=lambda t: (-t.value if stored.maximize else t.value, t.number))
    kept = {} if checkpoints.disabled else checkpoints.artifact_ids()
    rows = []
    for rank, t in enumerate(trials[:top], start=1):
        state, artifact_id = _checkpoint_state(t, kept, checkpoints.keep, checkpoints.disabled)
        attrs = t.user_attrs
        rows.append(TopTrial(rank, t.number, float(t.value), trial_attrs.hp_values(t),
                             dict(attrs.get(trial_attrs.METRICS) or {}),
                             trial_attrs.best_epoch(t), attrs.get(trial_attrs.EPOCHS),
                             attrs.get(trial_attrs.TRAIN_SECONDS), _tags(t), state,
                             artifact_id, attrs.get(trial_attrs.TEST_METRICS), attrs.get(trial_attrs.TEST_SAMPLES)))
    return rows


class _Rebuilder:
    """Builds a trial's model again, as its worker did, with the checkpoint's weights loaded."""

    def __init__(self, stored: StoredStudy, checkpoints: Checkpoints):
        from search import _datasets
        from search.space.loader import space_from_source

        self.stored, self.checkpoints = stored, checkpoints
        self.space = space_from_source(stored.record.space_source, stored.record.space_path)
        self.dataset = _datasets.load(stored.config.data, stored.config.seed)

    def build(self, trial: FrozenTrial, artifact_id: str):
        """(model with the best-epoch weights, the data set it was trained on)."""
        import keras

        from search import _datasets
        from search.execution.runner import load_weights
        from search.space.bridge import TrialHyperParameters

        keras.backend.clear_session()
        _datasets.activate(self.dataset)
        hp = TrialHyperParameters(optuna.trial.FixedTrial(trial.params), fixed=self.stored.config.fixed)
        model = self.space.hypermodel.build(hp)
        trained_on = _datasets.in_use()  # the trial's class subset, or the whole set
        with tempfile.TemporaryDirectory(prefix="search-best-") as folder:
            path = os.path.join(folder, f"trial_{trial.number}.weights.npz")
            self.checkpoints.download(artifact_id, path)
            load_weights(model, path)
        return model, trained_on


def evaluate_on_test(model, dataset) -> tuple[dict, int]:
    """The model's metrics on the data set's held-out test split, and how many samples that was."""
    metrics = model.evaluate(dataset.x_test, dataset.y_test, batch_size=EVAL_BATCH_SIZE,
                             return_dict=True, verbose=0)
    return {k: float(v) for k, v in metrics.items()}, len(dataset.x_test)


def _export(row: TopTrial, trial: FrozenTrial, model, dataset, stored: StoredStudy, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / f"trial_{row.number}.keras"
    model.save(model_path)
    config = stored.config
    info = {
        "study": stored.name, "trial": row.number, "rank": row.rank,
        "objective": config.objective, "direction": config.direction, "value": row.value,
        "params": row.params, "optuna_params": dict(trial.params),
        "metrics": row.metrics, "best_epoch": row.best_epoch, "epochs": row.epochs,
        "test_metrics": row.test_metrics, "test_samples": row.test_samples,
        "data": config.data, "seed": config.seed, "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "classes": list(dataset.classes) if dataset.classes else None,
        "space_path": stored.record.space_path, "model": model_path.name,
    }
    json_path = folder / f"trial_{row.number}.json"
    json_path.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return [str(model_path), str(json_path)]


def best(study: str, *, storage: str | None = None, top: int | None = None,
         evaluate: bool = False, export: str | None = None,
         on_trial: Callable[[TopTrial], None] | None = None, pins: Pins | None = None,
         on_note: Callable[[str], None] | None = None) -> BestTrials:
    """The ``top`` best completed trials (default: as many as the study keeps checkpoints of);
    with ``evaluate``, their test-split metrics (recorded on the trials); with ``export``, their
    models and configurations written to that folder. ``on_trial`` sees each trial when done.
    ``pins``: the study must be what they say before anything is read or run
    (``search.execution.pins``; evaluating and exporting execute the stored space source).
    ``on_note`` sees each note (``.notes``) before any model is rebuilt: the first unpinned run
    of a stored source here (``search.execution.trust``)."""
    if top is not None and top < 1:
        raise SearchError(f"--top must be at least 1 (got {top})")
    if export and Path(export).exists() and not Path(export).is_dir():
        raise SearchError(f"--export {export} is a file: give a folder")
    stored = open_study(storage, study, read_only=not (evaluate or export))  # reading writes nothing
    if not stored.foreign:
        (pins or Pins()).check(stored.record, url_of(stored.storage))
    config = stored.config
    checkpoints = Checkpoints.of(stored.storage, stored.study_id, config)
    if stored.foreign:  # search kept no checkpoints of a study it did not run
        checkpoints.disabled, checkpoints.keep, checkpoints.location = FOREIGN_NO_CHECKPOINTS, 0, None
    rows = top_trials(stored, top or max(1, config.keep_best), checkpoints)
    if not rows:
        raise SearchError(f"study {study!r} has no completed trials yet: run `search start` or "
                          "`search worker` first")
    result = BestTrials(study, config.objective, "maximize" if stored.maximize else "minimize",
                        checkpoints.keep, checkpoints.location or "nowhere", rows)
    if evaluate or export:
        def before_rebuilding():  # the first unpinned run of this stored source here is said first
            note = None if (pins and pins.pinned) else first_use_note(
                url_of(stored.storage), study, stored.record.space_source)
            if note:
                result.notes.append(note)
                if on_note is not None:
                    on_note(note)

        _evaluate_and_export(stored, checkpoints, result, evaluate, export, on_trial, before_rebuilding)
    elif on_trial is not None:
        for row in rows:
            on_trial(row)
    return result


def _evaluate_and_export(stored: StoredStudy, checkpoints: Checkpoints, result: BestTrials,
                         evaluate: bool, export: str | None, on_trial,
                         before_rebuilding: Callable[[], None] = lambda: None) -> None:
    by_number = {t.number: t for t in stored.study.get_trials(deepcopy=False)}
    usable = [r for r in result.trials if r.artifact_id]
    if checkpoints.disabled:
        raise SearchError(f"{checkpoints.disabled}: nothing to evaluate or export")
    if not usable:
        raise SearchError(f"none of the top {len(result.trials)} trials has a kept checkpoint in "
                          f"{checkpoints.location}: nothing to evaluate or export")
    before_rebuilding()
    rebuilder = _Rebuilder(stored, checkpoints)
    for row in result.trials:
        if not row.artifact_id:
            row.problem = f"no checkpoint ({row.checkpoint})"
        else:
            trial = by_number[row.number]
            try:
                model, dataset = rebuilder.build(trial, row.artifact_id)
            except SearchError:
                raise
            except Exception as exc:  # noqa: BLE001  (a model that cannot be rebuilt is reported, not raised)
                row.problem = f"cannot rebuild it with its weights: {one_line(exc)}"
            else:
                if evaluate:
                    row.test_metrics, row.test_samples = evaluate_on_test(model, dataset)
                    note_on_trial(stored.storage.engine, trial._trial_id, trial_attrs.TEST_METRICS, row.test_metrics)
                    note_on_trial(stored.storage.engine, trial._trial_id, trial_attrs.TEST_SAMPLES, row.test_samples)
                if export:
                    try:
                        row.exported = _export(row, trial, model, dataset, stored, Path(export))
                    except OSError as exc:
                        raise SearchError(f"cannot write to --export {export}: "
                                          f"{exc.strerror or one_line(exc)}") from None
                    except Exception as exc:  # noqa: BLE001  (a model Keras cannot save is reported)
                        row.problem = f"cannot export it: {one_line(exc)}"
        if on_trial is not None:
            on_trial(row)
