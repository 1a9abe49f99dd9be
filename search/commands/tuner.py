"""The drop-in tuner: Keras Tuner's ``Tuner`` API over a search study (Optuna samplers, many workers).

A Keras Tuner notebook changes one line::

    from search import Tuner as RandomSearch          # was: from keras_tuner import RandomSearch
    tuner = RandomSearch(build_model, objective="val_accuracy", max_trials=20,
                         directory="d", project_name="p")
    tuner.search(x, y, epochs=5, validation_data=(x_val, y_val))
    tuner.get_best_models()[0]; tuner.results_summary()

The study is ``project_name`` in the store (``storage=``, else ``$SEARCH_STORAGE``, else
``sqlite:///search.db``), a plain Optuna study with TPE (``sampler=``/``pruner=`` take the names of
``search start --sampler/--pruner``). ``search()`` stores its arrays as
``directory/project_name/data-<sha>.npz`` (the splits as given) and, when the tuner runs from a
``.py`` script, the script's source: ``search worker --study p`` on another process or machine (that
sees the same folder) runs the same trials. There the script runs as ``__main__`` up to the
tuner's ``search()``, which only hands the hypermodel over (nothing after it runs). A hypermodel
defined in a notebook has no source to store: the notebook runs the trials itself, and a worker
says why it cannot (``search.execution.worker.stored_space``).

What Keras Tuner does and this does alike: ``objective`` (a name, an ``Objective``, or None for a
``fit()`` returning a number), ``max_trials`` (the study's budget across all workers),
``max_consecutive_failed_trials``, ``overwrite``, ``seed``; ``search(*args, **kwargs)`` passes
``x, y``, ``validation_data``, ``epochs`` and the other ``fit()`` arguments to every trial, the
callbacks to this process's trials (copied per trial), and ends as Keras Tuner's ends (a
``FatalError`` or too many failures in a row raise, as does a study with no completed trial).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field

import keras_tuner as kt
import numpy as np
import optuna
from keras_tuner.src.engine.objective import create_objective
from optuna.trial import FrozenTrial, TrialState

from search import _datasets, trial_attrs
from search.console.progress import trial_line
from search.errors import SearchError
from search.options import DEFAULT_MAX_CONSECUTIVE_FAILURES, resolve_storage, start_options
from search.space import loader
from search.space.bridge import TrialHyperParameters
from search.storage import StudyRecords, open_storage

NOTEBOOK = "<notebook>"  # the space path of a study whose hypermodel has no source file
# Keras Tuner's Tuner arguments with no equivalent here: refused with one line, never ignored.
_UNSUPPORTED = ("hyperparameters", "tune_new_entries", "allow_new_entries", "max_model_size",
                "optimizer", "loss", "metrics", "distribution_strategy", "logger", "tuner_id",
                "oracle")
_STATUS = {TrialState.COMPLETE: "COMPLETED", TrialState.PRUNED: "STOPPED", TrialState.FAIL: "FAILED",
           TrialState.RUNNING: "RUNNING", TrialState.WAITING: "IDLE"}


def _hypermodel(hypermodel) -> kt.HyperModel:
    if isinstance(hypermodel, kt.HyperModel):
        return hypermodel
    if callable(hypermodel):
        return loader.FunctionHyperModel(hypermodel)
    raise SearchError("hypermodel must be a keras_tuner.HyperModel or a build(hp) function "
                      f"(got {type(hypermodel).__name__})")


def _script() -> str | None:
    """The .py script this process runs (``python script.py``), or None in a notebook or a REPL."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not path.endswith(".py") or not os.path.isfile(path):
        return None
    if any(part in ("site-packages", "dist-packages") for part in path.split(os.sep)):
        return None  # a tool's own entry point (pytest, ipykernel): not the user's code
    return os.path.abspath(path)


@dataclass
class TunerTrial:
    """A trial as Keras Tuner's ``Trial`` shows it."""

    trial_id: str
    hyperparameters: kt.HyperParameters
    score: float | None
    status: str
    best_step: int | None = None
    metrics: dict = field(default_factory=dict)
    message: str | None = None


class Oracle:
    """The parts of Keras Tuner's ``Oracle`` a notebook reads: ``objective``, ``max_trials``,
    ``trials``, ``get_best_trials``."""

    def __init__(self, tuner: Tuner):
        self._tuner = tuner

    @property
    def objective(self) -> kt.Objective:
        config = self._tuner._stored().config
        return kt.Objective(config.objective, config.direction)

    @property
    def max_trials(self) -> int:
        return self._tuner.max_trials

    @property
    def trials(self) -> dict[str, TunerTrial]:
        return {str(t.number): self._tuner._as_trial(t) for t in self._tuner._trials()}

    def get_best_trials(self, num_trials: int = 1) -> list[TunerTrial]:
        return [self._tuner._as_trial(t) for t in self._tuner._best(num_trials)]


class Tuner:
    """Keras Tuner's ``RandomSearch``/``Tuner`` constructor and methods over a search study."""

    def __init__(self, hypermodel=None, objective=None, max_trials: int = 10, *,
                 directory: str | None = None, project_name: str = "untitled_project",
                 overwrite: bool = False, seed: int | None = None,
                 max_consecutive_failed_trials: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
                 executions_per_trial: int = 1, max_retries_per_trial: int = 0,
                 storage: str | None = None, sampler: str = "tpe", pruner: str = "median",
                 keep_best: int = 3, **kwargs):
        self.hypermodel = _hypermodel(hypermodel)
        self.project_name = project_name
        if loader.capturing():  # a worker runs this script as the study's space: hand over, no more
            loader.offer(project_name, self.hypermodel)
            self._inert = True
            return
        self._inert = False
        unsupported = sorted(set(kwargs) & set(_UNSUPPORTED)) or sorted(kwargs)
        if unsupported:
            raise SearchError(f"search.Tuner does not take {unsupported[0]}=: compile the model "
                              "in build() and declare the space there")
        if executions_per_trial != 1 or max_retries_per_trial != 0:
            raise SearchError("search.Tuner runs each trial once (executions_per_trial=1, "
                              "max_retries_per_trial=0); a trial whose worker dies is retried "
                              "on its own (search start --max-retry)")
        self.objective = None if objective is None else create_objective(objective)
        self.max_trials = max_trials
        self.directory = directory or "."
        self.overwrite = overwrite
        self.seed = seed
        self.max_consecutive_failed_trials = max_consecutive_failed_trials
        self.sampler, self.pruner, self.keep_best = sampler, pruner, keep_best
        self.storage = resolve_storage(storage)
        self.oracle = Oracle(self)
        self._space: loader.Space | None = None

    @property
    def project_dir(self) -> str:
        return os.path.join(self.directory, self.project_name)

    # -- search ---------------------------------------------------------------------------------

    def search(self, *fit_args, **fit_kwargs) -> None:
        """Run trials in this process until the study's budget (``max_trials``) is spent."""
        if self._inert:
            raise loader.SpaceCaptured()
        from search.commands import start
        from search.execution.worker import run_worker

        x, y, xv, yv, epochs, callbacks, verbose, rest = self._fit_arguments(fit_args, fit_kwargs)
        os.makedirs(self.project_dir, exist_ok=True)
        data = self._write_data(x, y, xv, yv)
        script = _script()
        kind = "script" if script else "notebook"
        source = ""
        if script:
            with open(script, encoding="utf-8") as f:
                source = f.read()
        self._space = loader.Space(path=script or NOTEBOOK, source=source, hypermodel=self.hypermodel,
                                   default_data=data, objective=self.objective)
        if self.overwrite:
            self._delete_study()
            self.overwrite = False  # once: a second search() continues this one, as Keras Tuner's
        options = start_options(
            script or NOTEBOOK, study=self.project_name, storage=self.storage, trials=self.max_trials,
            epochs=epochs, data=data, sampler=self.sampler, pruner=self.pruner, seed=self.seed,
            max_consecutive_failures=self.max_consecutive_failed_trials, keep_best=self.keep_best)
        prepared = start.prepare(options, space=self._space, source_kind=kind, fit_kwargs=rest)
        if verbose:
            for note in prepared.notes:
                print(f"note: {note}")

        def on_trial(trial: FrozenTrial) -> None:
            if verbose:
                print(trial_line(trial))

        run_worker(self.storage, self.project_name, space=self._space, callbacks=callbacks,
                   on_trial=on_trial)
        stored = prepared.stored
        from search.study import snapshot

        start.check_ended(stored, snapshot(stored))

    def _fit_arguments(self, args, kwargs):
        kwargs = dict(kwargs)
        args = list(args)
        x = args.pop(0) if args else kwargs.pop("x", None)
        y = args.pop(0) if args else kwargs.pop("y", None)
        if args:
            raise SearchError("search() takes x and y positionally; pass the other fit() "
                              "arguments by name")
        if x is None or y is None:
            raise SearchError("search() needs x and y arrays (a tf.data.Dataset or a generator "
                              "cannot be stored for the study's workers: pass numpy arrays)")
        x, y = np.asarray(x), np.asarray(y)
        validation = kwargs.pop("validation_data", None)
        split = kwargs.pop("validation_split", None)
        if validation is not None:
            xv, yv = np.asarray(validation[0]), np.asarray(validation[1])
        elif split:
            at = int(len(x) * (1 - float(split)))  # Keras takes the last fraction, unshuffled
            x, xv, y, yv = x[:at], x[at:], y[:at], y[at:]
        else:
            xv, yv = x[:0], y[:0]
        epochs = int(kwargs.pop("epochs", 1))
        callbacks = list(kwargs.pop("callbacks", None) or [])
        verbose = kwargs.pop("verbose", 1)
        try:
            json.dumps(kwargs)
        except TypeError:
            raise SearchError(f"search(): the fit() arguments {', '.join(sorted(kwargs))} must be "
                              "plain values (numbers, strings, lists) to be stored for the "
                              "study's workers") from None
        return x, y, xv, yv, epochs, callbacks, verbose, kwargs

    def _write_data(self, x, y, xv, yv) -> str:
        digest = hashlib.sha256()
        for array in (x, y, xv, yv):
            digest.update(str((array.shape, array.dtype)).encode())
            digest.update(np.ascontiguousarray(array).data)
        path = os.path.abspath(os.path.join(self.project_dir, f"data-{digest.hexdigest()[:12]}.npz"))
        if not os.path.exists(path):
            partial = path + ".partial.npz"
            np.savez(partial, x_train=x, y_train=y, x_val=xv, y_val=yv)
            os.replace(partial, path)
        return path

    def _delete_study(self) -> None:
        store = open_storage(self.storage)
        records = StudyRecords(store.engine)
        if records.get(self.project_name) is not None:
            records.delete(self.project_name)
        if self.project_name in {s.study_name for s in store.get_all_studies()}:
            optuna.delete_study(study_name=self.project_name, storage=store)

    # -- results --------------------------------------------------------------------------------

    def _stored(self):
        from search.study import open_study

        return open_study(self.storage, self.project_name)

    def _trials(self) -> list[FrozenTrial]:
        stored = self._stored()
        return stored.storage.get_all_trials(stored.study_id)

    def _best(self, num: int) -> list[FrozenTrial]:
        stored = self._stored()
        complete = [t for t in stored.storage.get_all_trials(stored.study_id, states=(TrialState.COMPLETE,))
                    if t.value is not None]
        complete.sort(key=lambda t: t.value, reverse=stored.maximize)
        return complete[:num]

    def _hyperparameters(self, trial: FrozenTrial) -> kt.HyperParameters:
        config = self._stored().config
        hp = kt.HyperParameters.from_config(config.space) if config.space else kt.HyperParameters()
        hp.values = trial_attrs.hp_values(trial)
        return hp

    def _as_trial(self, trial: FrozenTrial) -> TunerTrial:
        attrs = trial.user_attrs
        return TunerTrial(str(trial.number), self._hyperparameters(trial), trial.value,
                          _STATUS.get(trial.state, trial.state.name), attrs.get(trial_attrs.BEST_EPOCH),
                          dict(attrs.get(trial_attrs.METRICS) or {}), trial_attrs.fail_reason(trial))

    def get_best_hyperparameters(self, num_trials: int = 1) -> list[kt.HyperParameters]:
        return [self._hyperparameters(t) for t in self._best(num_trials)]

    def get_best_models(self, num_models: int = 1) -> list:
        """The best trials' models with their best-epoch weights (kept for the ``keep_best`` best)."""
        import tempfile

        import keras

        from search.execution.checkpoints import Checkpoints
        from search.execution.runner import load_weights
        from search.execution.worker import stored_space

        stored = self._stored()
        space = self._space or stored_space(stored)
        checkpoints = Checkpoints.of(stored.storage, stored.study_id, stored.config)
        kept = checkpoints.artifact_ids()
        models = []
        for trial in self._best(num_models):
            if not kept.get(trial.number):
                raise SearchError(f"trial {trial.number} kept no weights (the study keeps the best "
                                  f"{stored.config.keep_best}: Tuner(keep_best=K) keeps more)")
            keras.backend.clear_session(free_memory=False)
            dataset = _datasets.load(stored.config.data, stored.config.seed)
            _datasets.activate(dataset)
            hp = TrialHyperParameters(optuna.trial.FixedTrial(trial.params), fixed=stored.config.fixed)
            model = space.hypermodel.build(hp)
            if not model.built:  # a Sequential without an Input: built by its first batch
                model.build((None, *dataset.input_shape))
            with tempfile.TemporaryDirectory(prefix="search-tuner-") as folder:
                path = os.path.join(folder, "weights.npz")
                checkpoints.download(kept[trial.number], path)
                load_weights(model, path)
            models.append(model)
        return models

    @property
    def study(self) -> optuna.Study:
        """The Optuna study behind the tuner."""
        return optuna.load_study(study_name=self.project_name, storage=self.storage)

    def results_summary(self, num_trials: int = 10) -> None:
        """Keras Tuner's summary: the best trials, their hyperparameters and scores."""
        print("Results summary")
        print(f"Results in {self.project_dir} (study {self.project_name} in {self._stored().where})")
        print(f"Showing {num_trials} best trials")
        print(self.oracle.objective)
        for trial in self.oracle.get_best_trials(num_trials):
            print()
            print(f"Trial {trial.trial_id} summary")
            print("Hyperparameters:")
            for name, value in trial.hyperparameters.values.items():
                print(f"{name}: {value}")
            print(f"Score: {trial.score}")

    def search_space_summary(self, extended: bool = False) -> None:
        """Keras Tuner's summary of the search space (as discovered when the study was created)."""
        stored = self._stored()
        hps = kt.HyperParameters.from_config(stored.config.space) if stored.config.space \
            else kt.HyperParameters()
        print("Search space summary")
        print(f"Default search space size: {len(hps.space)}")
        for hp in hps.space:
            config = hp.get_config()
            name = config.pop("name")
            print(f"{name} ({hp.__class__.__name__})")
            print(config)
