"""Space modules: a ``.py`` file with a Keras Tuner hypermodel and the data it trains on.

Contract (see the README): the module defines one of

- ``HYPERMODEL`` (or ``hypermodel``): a ``keras_tuner.HyperModel`` instance (e.g. from
  ``keras_tuner.applications``) or a build function, what a Keras Tuner user passes to a tuner,
- a ``keras_tuner.HyperModel`` subclass (instantiated with no arguments),
- ``build(hp)`` (or the guides' ``build_model(hp)``) returning a compiled Keras model, with an optional ``fit(hp, model, *args, **kwargs)``,

and optionally ``DATA`` (the default data set name or path), ``OBJECTIVE`` (a name or a
``keras_tuner.Objective``, as Keras Tuner's ``objective=``), ``DIRECTION`` ("max"/"min", inferred
from the name as Keras Tuner does) and ``LABELS`` ("sparse" or "one_hot"; by default one-hot for a
model compiled with a categorical loss: ``search.space.labels``), ``CONDITIONS`` (factors swept,
not optimised: ``search.space.conditions``). ``search.data.current()`` gives
``build`` the data set's input shape and number of classes.

The study's objective (:func:`study_objective`): ``search start --objective NAME [--direction]``,
else the space's ``OBJECTIVE``, else ``val_accuracy``, or, where ``fit()`` returns a number and no
objective is named, Keras Tuner's ``default_objective`` (that number, minimised).
"""

from __future__ import annotations

import linecache
import os
import signal
import threading
import types
from contextlib import contextmanager
from dataclasses import dataclass, field

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine.objective import DefaultObjective, MultiObjective, create_objective

from search import _datasets
from search.errors import DownloadError, SearchError, SpaceError, one_line
from search.space import labels
from search.space.bridge import TrialHyperParameters
from search.space.conditions import checked as checked_conditions
from search.space.source import compile_source, read_source, source_sha256

DEFAULT_OBJECTIVE = "val_accuracy"  # where neither the study nor the space names one
# How long importing a space module, and discovering its space (building it with defaults, a few
# times), may take before it is stopped with the place where it hung (seconds; 0: no bound).
IMPORT_TIMEOUT_ENV, DISCOVERY_TIMEOUT_ENV = "SEARCH_SPACE_IMPORT_TIMEOUT", "SEARCH_SPACE_DISCOVERY_TIMEOUT"
IMPORT_TIMEOUT_S, DISCOVERY_TIMEOUT_S = 120.0, 600.0


class _Hung(BaseException):
    """Raised in the main thread when a bounded step runs out of time (a BaseException, so that
    the space's own ``except Exception`` does not swallow it)."""

    def __init__(self, frame):
        super().__init__()
        self.frame = frame


def _where(frame, path: str, source: str | None) -> str:
    """The innermost frame in the space file ``path`` (else the innermost), as the line it ran
    (from ``source``, the space's source as it ran, in the space file)."""
    innermost, ours = frame, None
    while frame is not None:
        if ours is None and os.path.abspath(frame.f_code.co_filename) == os.path.abspath(path):
            ours = frame
        frame = frame.f_back
    frame = ours or innermost
    lines = source.splitlines() if ours is not None and source is not None else None
    text = (lines[frame.f_lineno - 1] if lines and frame.f_lineno <= len(lines)
            else linecache.getline(frame.f_code.co_filename, frame.f_lineno)).strip()
    place = f"line {frame.f_lineno} in {frame.f_code.co_name} ({os.path.basename(frame.f_code.co_filename)})"
    return f"{place}: {text}" if text else place


@contextmanager
def bounded(path: str, what: str, env: str, default_s: float, source: str | None = None):
    """Run the block for at most ``$env`` seconds (``default_s``), else raise SpaceError naming
    ``path`` and where it hung (SIGALRM: the main thread only; elsewhere unbounded)."""
    seconds = float(os.environ.get(env, default_s))
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _Hung(frame)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # again every second after the first: code that swallows the first (a library's import
    # machinery catching BaseException) still stops
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    except _Hung as hung:
        raise SpaceError(f"{path}: {what} did not finish in {seconds:g} s ({env}); it was at "
                         f"{_where(hung.frame, path, source)}") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class FunctionHyperModel(kt.HyperModel):
    """A hypermodel made of a module's ``build(hp)`` and optional ``fit(hp, model, ...)``."""

    def __init__(self, build_fn, fit_fn=None):
        super().__init__()
        self._build_fn = build_fn
        self._fit_fn = fit_fn

    def build(self, hp):
        return self._build_fn(hp)

    def fit(self, hp, model, *args, **kwargs):
        if self._fit_fn is None:
            return super().fit(hp, model, *args, **kwargs)
        return self._fit_fn(hp, model, *args, **kwargs)


@dataclass
class Space:
    path: str
    source: str
    hypermodel: kt.HyperModel
    default_data: str
    objective: kt.Objective | None  # the space's OBJECTIVE (None: it names none)
    labels: str | None = None  # the space's LABELS: "sparse", "one_hot", or None (by the loss)
    doc: str = ""
    conditions: dict = field(default_factory=dict)  # the space's CONDITIONS (search.space.conditions)

    @property
    def offline_command(self) -> str | None:
        """The command in the module's docstring marked ``# offline`` (runs without internet)."""
        for line in self.doc.splitlines():
            command, _, comment = line.strip().partition("#")
            if command.startswith("search start") and comment.strip().startswith("offline"):
                return command.strip()
        return None

    @property
    def sha256(self) -> str:
        return source_sha256(self.source)

    @property
    def custom_fit(self) -> bool:
        """Whether the hypermodel's ``fit`` is its own (it then passes training arguments itself)."""
        if isinstance(self.hypermodel, FunctionHyperModel):
            return self.hypermodel._fit_fn is not None
        return type(self.hypermodel).fit is not kt.HyperModel.fit


def load_space(path: str) -> Space:
    """Load the space module at ``path``."""
    return space_from_source(read_source(path), path)


class SpaceCaptured(BaseException):
    """Raised by ``search.Tuner.search()`` while a stored tuner script runs as a space: the
    tuner's hypermodel is captured, and nothing after ``search()`` runs."""


_captured: list | None = None  # (project_name, hypermodel) offered by tuners while a script runs


def capturing() -> bool:
    """Whether a stored tuner script is running as a space (its tuners only offer their hypermodel)."""
    return _captured is not None


def offer(project_name: str, hypermodel: kt.HyperModel) -> None:
    """A ``search.Tuner`` built while a script runs as a space gives its hypermodel here."""
    if _captured is not None:
        _captured.append((project_name, hypermodel))


def _exec_space(code, module: types.ModuleType, path: str) -> None:
    try:
        exec(code, module.__dict__)
    except SpaceCaptured:
        pass
    except Exception as exc:
        raise SpaceError(f"{path}: importing the space raised {one_line(exc)}") from None


def space_from_source(source: str, path: str, script_of: str | None = None) -> Space:
    """Execute a space module's source (as stored in a study) and find its hypermodel.

    ``script_of``: the source is the script that ran ``search.Tuner(project_name=script_of)``; it
    runs as ``__main__`` up to that tuner's ``search()``, and the tuner's hypermodel is the space's."""
    global _captured
    name = "__main__" if script_of else "search_space_" + os.path.splitext(os.path.basename(path))[0]
    code = compile_source(source, path)
    module = types.ModuleType(name)
    module.__file__ = path
    outer, _captured = _captured, ([] if script_of else None)
    try:
        with bounded(path, "importing the space", IMPORT_TIMEOUT_ENV, IMPORT_TIMEOUT_S, source):
            _exec_space(code, module, path)
    finally:
        captured, _captured = _captured, outer
    if script_of:
        mine = [hm for project, hm in captured or [] if project == script_of]
        if not mine:
            raise SpaceError(f"{path}: the script no longer builds search.Tuner(project_name="
                             f"{script_of!r}) before its search(): nothing to run")
        hypermodel = mine[-1]
    else:
        hypermodel = _find_hypermodel(module, path)
    objective = getattr(module, "OBJECTIVE", None)
    direction = getattr(module, "DIRECTION", None)
    if objective is not None:
        objective = _objective(objective, direction, f"{path}: OBJECTIVE")
    elif direction is not None:
        raise SpaceError(f"{path}: DIRECTION without OBJECTIVE: name the metric it applies to")
    encoding = getattr(module, "LABELS", None)
    if encoding is not None and encoding not in labels.ENCODINGS:
        raise SpaceError(f"{path}: LABELS must be one of {', '.join(map(repr, labels.ENCODINGS))} "
                         f"(got {encoding!r})")
    return Space(
        path=path,
        source=source,
        hypermodel=hypermodel,
        default_data=str(getattr(module, "DATA", _datasets.DEFAULT_DATA)),
        objective=objective,
        labels=encoding,
        doc=module.__doc__ or "",
        conditions=checked_conditions(getattr(module, "CONDITIONS", None), path),
    )


def _objective(objective, direction: str | None, where: str) -> kt.Objective:
    """One Keras Tuner objective from a name (direction given or inferred) or an Objective."""
    if isinstance(objective, str) and direction is not None:
        objective = kt.Objective(objective, direction)
    try:
        objective = create_objective(objective)
    except ValueError:  # Keras Tuner cannot infer the direction of an unknown metric
        raise SearchError(f"{where} {objective!r}: the direction of an unknown metric cannot be "
                          "inferred: give it (min or max)") from None
    except TypeError as exc:
        raise SearchError(f"{where}: {one_line(exc)}") from None
    if isinstance(objective, list) or isinstance(objective, MultiObjective) \
            or objective.direction not in ("min", "max"):
        raise SearchError(f"{where} must be one metric with direction 'min' or 'max'")
    return objective


def study_objective(space: Space, name: str | None, direction: str | None,
                    fit_returns: str | None) -> kt.Objective:
    """The objective a new study optimizes: ``--objective NAME`` (``--direction``, else the
    space's direction for that name, else Keras Tuner's inference), else the space's
    ``OBJECTIVE``, else ``val_accuracy``; a ``fit()`` that returns a number with no objective
    named optimizes Keras Tuner's ``default_objective`` (that number), minimised."""
    if name is None and direction is not None:
        if space.objective is None:
            raise SearchError("--direction without --objective: name the metric it applies to")
        name = space.objective.name
    if name is not None:
        if direction is None and space.objective is not None and space.objective.name == name:
            return space.objective
        return _objective(name, direction, "--objective")
    if space.objective is not None:
        return space.objective
    if fit_returns == "number":
        return DefaultObjective()
    return kt.Objective(DEFAULT_OBJECTIVE, "max")


# Names a module's hypermodel goes by: the project's, and those the Keras Tuner guides use.
HYPERMODEL_NAMES = ("HYPERMODEL", "hypermodel")
BUILD_NAMES = ("build", "build_model")


def _explicit_hypermodel(module: types.ModuleType, path: str) -> kt.HyperModel | None:
    """``HYPERMODEL`` (or the guides' lower-case ``hypermodel``): an instance or a build function."""
    for name in HYPERMODEL_NAMES:
        explicit = getattr(module, name, None)
        if explicit is None or isinstance(explicit, types.ModuleType):
            continue
        if isinstance(explicit, type) and issubclass(explicit, kt.HyperModel):
            raise SpaceError(f"{path}: {name} is the class {explicit.__name__}: set it to an "
                             f"instance, {explicit.__name__}()")
        if isinstance(explicit, kt.HyperModel):
            return explicit
        if callable(explicit):
            return FunctionHyperModel(explicit)  # a build function, as Keras Tuner's tuners take
        raise SpaceError(f"{path}: {name} must be a keras_tuner.HyperModel instance or a "
                         "build(hp) function")
    return None


def _defined_here(module: types.ModuleType) -> list[str]:
    """What the module itself defines that could have been its hypermodel: its functions and
    classes, and the HyperModel instances it holds."""
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(obj, kt.HyperModel):
            found.append(f"{name} ({type(obj).__name__} instance)")
        elif callable(obj) and getattr(obj, "__module__", None) == module.__name__:
            found.append(f"{name}()" if isinstance(obj, types.FunctionType) else f"{name} (class)")
    return found


def _find_hypermodel(module: types.ModuleType, path: str) -> kt.HyperModel:
    explicit = _explicit_hypermodel(module, path)
    if explicit is not None:
        return explicit
    subclasses = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, kt.HyperModel)
        and obj.__module__ == module.__name__
    ]
    if len(subclasses) > 1:
        names = ", ".join(c.__name__ for c in subclasses)
        raise SpaceError(f"{path}: several HyperModel classes ({names}); set HYPERMODEL = one of them()")
    if subclasses:
        try:
            return subclasses[0]()
        except Exception as exc:
            raise SpaceError(f"{path}: {subclasses[0].__name__}() raised {one_line(exc)}") from None
    for name in BUILD_NAMES:
        build = getattr(module, name, None)
        if callable(build) and not isinstance(build, type):
            fit = getattr(module, "fit", None)
            return FunctionHyperModel(build, fit if callable(fit) else None)
    defined = _defined_here(module)
    raise SpaceError(
        f"{path}: defines no hypermodel: add build(hp), a keras_tuner.HyperModel subclass or "
        "HYPERMODEL = <instance> (build_model(hp) and hypermodel = ... work too); it defines "
        + (", ".join(defined) if defined else "no function, class or HyperModel instance")
    )


_NOT_TRAINED = object()  # what the model's fit returns while a space's fit() is discovered


def fit_returns(returned) -> str | None:
    """What kind of result a ``fit()`` gave: "history" (what ``model.fit`` returned), "number",
    "dict", or None (unknown)."""
    if returned is _NOT_TRAINED or isinstance(returned, keras.callbacks.History):
        return "history"
    if isinstance(returned, (int, float, np.floating)) and not isinstance(returned, bool):
        return "number"
    if isinstance(returned, dict):
        return "dict"
    return None


def _register_fit_parameters(space: Space, hp, model, dataset) -> str | None:
    """Run the hypermodel's ``fit`` against a model that does not train, so parameters it defines
    (batch size, epochs, ...) join the discovered space; returns what kind of result it gave
    (:func:`fit_returns`). Errors there are ignored: the parameters reached before them are
    already registered, the rest appear when a trial reaches them."""
    if not space.custom_fit:
        return "history"
    model.fit = lambda *args, **kwargs: _NOT_TRAINED
    encoding = labels.encoding_for(model, space.labels)
    try:
        returned = space.hypermodel.fit(
            hp, model, dataset.x_train[:2], labels.encode(dataset.y_train[:2], dataset.num_classes, encoding),
            validation_data=(dataset.x_val[:2],
                             labels.encode(dataset.y_val[:2], dataset.num_classes, encoding)),
            epochs=0, callbacks=[], verbose=0)
    except SpaceError:
        raise  # a bad --set value met in fit()
    except Exception:
        return None
    return fit_returns(returned)


@dataclass
class Discovery:
    hyperparameters: kt.HyperParameters  # every parameter the space defines
    defaults: dict  # the default configuration (the values of the first build)
    fit_returns: str | None = None  # what the default configuration's fit() gave (fit_returns)
    notes: list[str] = field(default_factory=list)  # for the user (the model trains on raw pixels)


def discover(space: Space, dataset: _datasets.Dataset, fixed: dict | None = None) -> Discovery:
    """The space's full set of hyperparameters, the way Keras Tuner finds it: build with defaults,
    then again with values that open every conditional scope not yet seen active.

    Raises SpaceError when build() fails with the default configuration, or it all takes longer
    than ``$SEARCH_SPACE_DISCOVERY_TIMEOUT`` seconds.
    """
    with bounded(space.path, "discovering the space (building it with defaults)",
                 DISCOVERY_TIMEOUT_ENV, DISCOVERY_TIMEOUT_S, space.source):
        return _discover(space, dataset, fixed)


def _discover(space: Space, dataset: _datasets.Dataset, fixed: dict | None) -> Discovery:
    _datasets.activate(dataset)
    full = kt.HyperParameters()
    never_active: list = []
    once_active: list = []
    preset: dict = {}
    defaults: dict | None = None
    returns: str | None = None
    notes: list[str] = []
    for _ in range(100):  # bounded: each round opens at least one new scope
        hp = TrialHyperParameters(fixed=fixed)
        hp.values.update(preset)
        try:
            model = space.hypermodel.build(hp)
        except (SpaceError, DownloadError):
            raise
        except Exception as exc:
            raise SpaceError(f"{space.path}: build() raised {one_line(exc)}; nothing was stored "
                             "(fix the space or the --set values)") from None
        if not isinstance(model, keras.Model):
            raise SpaceError(f"{space.path}: build() returned {type(model).__name__}, not a Keras "
                             "model; nothing was stored")
        returned = _register_fit_parameters(space, hp, model, dataset)
        keras.backend.clear_session()
        if defaults is None:
            defaults, returns = dict(hp.values), returned
            notes += filter(None, [_datasets.unscaled_note_once(model, dataset)])
        for item in hp.space:
            if not full._exists(item.name, item.conditions):
                full._register(item)
        for conditions in hp.active_scopes:
            if conditions not in once_active:
                once_active.append(conditions)
            if conditions in never_active:
                never_active.remove(conditions)
        for conditions in hp.inactive_scopes:
            if conditions not in once_active and conditions not in never_active:
                never_active.append(conditions)
        if not never_active:
            break
        preset = {c.name: c.values[0] for c in never_active[0]}
        once_active.append(never_active.pop(0))
    return Discovery(full, defaults or {}, returns, notes)


def validate_fixed(space_hps: kt.HyperParameters, fixed: dict, known_names: set[str] = frozenset()) -> dict:
    """Check ``--set`` names against the space and coerce their values; returns the coerced dict."""
    from search.space.bridge import coerce_fixed

    by_name = {hp.name: hp for hp in space_hps.space}
    names = set(by_name) | set(known_names)
    result = {}
    for name, raw in fixed.items():
        if name not in names:
            listed = ", ".join(sorted(names)) or "none"
            raise SpaceError(f"--set {name}={raw}: the space defines no hyperparameter {name!r} "
                             f"(it has: {listed})")
        result[name] = coerce_fixed(by_name[name], raw) if name in by_name else raw
    return result
