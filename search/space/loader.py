"""Space modules: a ``.py`` file with a Keras Tuner hypermodel and the data it trains on.

Contract (see the README): the module defines one of

- ``HYPERMODEL``: a ``keras_tuner.HyperModel`` instance (e.g. from ``keras_tuner.applications``),
- a ``keras_tuner.HyperModel`` subclass (instantiated with no arguments),
- ``build(hp)`` returning a compiled Keras model, with an optional ``fit(hp, model, *args, **kwargs)``,

and optionally ``DATA`` (the default data set name or path), ``OBJECTIVE`` (default
``val_accuracy``; a name or a ``keras_tuner.Objective``) and ``DIRECTION`` ("max"/"min", inferred
from the name as Keras Tuner does). ``search.data.current()`` gives ``build`` the data set's input
shape and number of classes.
"""

from __future__ import annotations

import hashlib
import os
import types
from dataclasses import dataclass

import keras
import keras_tuner as kt
from keras_tuner.src.engine.objective import create_objective

from search import _datasets
from search.errors import SpaceError, one_line
from search.space.bridge import TrialHyperParameters


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
    objective: kt.Objective

    @property
    def sha256(self) -> str:
        return source_sha256(self.source)

    @property
    def custom_fit(self) -> bool:
        """Whether the hypermodel's ``fit`` is its own (it then passes training arguments itself)."""
        if isinstance(self.hypermodel, FunctionHyperModel):
            return self.hypermodel._fit_fn is not None
        return type(self.hypermodel).fit is not kt.HyperModel.fit


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def read_source(path: str) -> str:
    if not os.path.exists(path):
        raise SpaceError(f"space file {path} does not exist")
    if os.path.isdir(path) or not path.endswith(".py"):
        raise SpaceError(f"space file {path} is not a Python file (.py)")
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark, as Python itself reads it
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"space file {path} cannot be read: {one_line(exc)}") from None


def load_space(path: str) -> Space:
    """Load the space module at ``path``."""
    return space_from_source(read_source(path), path)


def space_from_source(source: str, path: str) -> Space:
    """Execute a space module's source (as stored in a study) and find its hypermodel."""
    name = "search_space_" + os.path.splitext(os.path.basename(path))[0]
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise SpaceError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    module = types.ModuleType(name)
    module.__file__ = path
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        raise SpaceError(f"{path}: importing the space raised {one_line(exc)}") from None
    hypermodel = _find_hypermodel(module, path)
    objective = getattr(module, "OBJECTIVE", "val_accuracy")
    direction = getattr(module, "DIRECTION", None)
    if isinstance(objective, str) and direction is not None:
        objective = kt.Objective(objective, direction)
    try:
        objective = create_objective(objective)
    except (TypeError, ValueError) as exc:
        raise SpaceError(f"{path}: bad OBJECTIVE: {one_line(exc)}") from None
    if isinstance(objective, list) or objective.direction not in ("min", "max"):
        raise SpaceError(f"{path}: OBJECTIVE must be one metric with direction 'min' or 'max'")
    return Space(
        path=path,
        source=source,
        hypermodel=hypermodel,
        default_data=str(getattr(module, "DATA", _datasets.DEFAULT_DATA)),
        objective=objective,
    )


def _find_hypermodel(module: types.ModuleType, path: str) -> kt.HyperModel:
    explicit = getattr(module, "HYPERMODEL", None)
    if explicit is not None:
        if not isinstance(explicit, kt.HyperModel):
            raise SpaceError(f"{path}: HYPERMODEL must be a keras_tuner.HyperModel instance")
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
    build = getattr(module, "build", None)
    if callable(build):
        fit = getattr(module, "fit", None)
        return FunctionHyperModel(build, fit if callable(fit) else None)
    raise SpaceError(
        f"{path}: defines no hypermodel: add build(hp), a keras_tuner.HyperModel subclass "
        "or HYPERMODEL = <instance>"
    )


def _register_fit_parameters(space: Space, hp, model, dataset) -> None:
    """Run the hypermodel's ``fit`` against a model that does not train, so parameters it defines
    (batch size, epochs, ...) join the discovered space. Errors there are ignored: the parameters
    reached before them are already registered, the rest appear when a trial reaches them."""
    if not space.custom_fit:
        return
    model.fit = lambda *args, **kwargs: None
    try:
        space.hypermodel.fit(hp, model, dataset.x_train[:2], dataset.y_train[:2],
                             validation_data=(dataset.x_val[:2], dataset.y_val[:2]), epochs=0,
                             callbacks=[], verbose=0)
    except SpaceError:
        raise  # a bad --set value met in fit()
    except Exception:
        pass


@dataclass
class Discovery:
    hyperparameters: kt.HyperParameters  # every parameter the space defines
    defaults: dict  # the default configuration (the values of the first build)


def discover(space: Space, dataset: _datasets.Dataset, fixed: dict | None = None) -> Discovery:
    """The space's full set of hyperparameters, the way Keras Tuner finds it: build with defaults,
    then again with values that open every conditional scope not yet seen active.

    Raises SpaceError when build() fails with the default configuration.
    """
    _datasets.activate(dataset)
    full = kt.HyperParameters()
    never_active: list = []
    once_active: list = []
    preset: dict = {}
    defaults: dict | None = None
    for _ in range(100):  # bounded: each round opens at least one new scope
        hp = TrialHyperParameters(fixed=fixed)
        hp.values.update(preset)
        try:
            model = space.hypermodel.build(hp)
        except SpaceError:
            raise
        except Exception as exc:
            raise SpaceError(f"{space.path}: build() raised {one_line(exc)}; nothing was stored "
                             "(fix the space or the --set values)") from None
        _register_fit_parameters(space, hp, model, dataset)
        keras.backend.clear_session()
        if defaults is None:
            defaults = dict(hp.values)
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
    return Discovery(full, defaults or {})


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
