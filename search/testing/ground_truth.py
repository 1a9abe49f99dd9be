"""A configuration trained with plain Keras Tuner + Keras, as a ground truth for the service.

The space's own ``build`` and ``fit`` on a ``keras_tuner.HyperParameters`` holding the values,
``model.fit`` on the same digits split (the class subset ``build()`` selects), scored as the
service scores a trial: the best epoch's objective. None of the service's runner, callbacks,
pruning or analysis runs. Shared by ``tests/e2e/test_ground_truth.py`` (the ablation) and
``bench/search_truth.py`` (the search-trial report)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_space_module(path: str | Path, name: str = "space_plain") -> ModuleType:
    """The space file as a plain module (not through the service's loader)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_keras_score(space: ModuleType, dataset, values: dict, seed: int, epochs: int,
                      objective: str = "val_accuracy") -> float:
    """The best epoch's ``objective`` of ``values`` trained with plain Keras on ``seed`` (the
    space's ``build(hp)`` and its ``fit(hp, model, ...)``, or ``model.fit`` without one)."""
    import keras
    import keras_tuner as kt

    from search import _datasets

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    _datasets.activate(dataset)
    hp = kt.HyperParameters()
    hp.values.update(values)
    model = space.build(hp)
    trained_on = _datasets.in_use()  # the class subset build() selected, or the whole set
    fit = getattr(space, "fit", None)  # a space without fit(): Keras' own, with a tuned batch size
    arguments = dict(epochs=epochs, verbose=0, validation_data=(trained_on.x_val, trained_on.y_val))
    if fit is None and "batch_size" in hp.values:
        arguments["batch_size"] = hp.values["batch_size"]
    history = (fit(hp, model, trained_on.x_train, trained_on.y_train, **arguments) if fit else
               model.fit(trained_on.x_train, trained_on.y_train, **arguments))
    curve = history.history[objective]
    return max(curve) if objective.endswith(("accuracy", "auc")) else min(curve)
