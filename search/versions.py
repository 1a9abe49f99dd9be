"""The versions of search and of the libraries it runs on, from the installed packages' metadata
(nothing is imported, so ``search --version`` is instant), and the Keras backend in use."""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

LIBRARIES = ("keras", "keras-tuner", "optuna", "tensorflow", "jax", "torch")


def keras_backend() -> str:
    """The backend Keras will load: ``KERAS_BACKEND``, else ``~/.keras/keras.json``, else
    TensorFlow (Keras' own order)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return json.loads(config.read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
                    "openvino": "openvino"}


def check_backend() -> None:
    """Keras' backend is installed: else one line saying which install adds it (before Keras
    is imported, whose own error is a traceback)."""
    import importlib.util

    from search.errors import SearchError

    backend = keras_backend()
    package = BACKEND_PACKAGES.get(backend, backend)
    if importlib.util.find_spec(package) is None:
        raise SearchError(f"Keras' backend {backend!r} is not installed: pip install "
                          f"'search[{package}]' (from a checkout: pip install -e \".[{package}]\"), or "
                          f"set KERAS_BACKEND to an installed one (jax, torch, tensorflow)")


def versions() -> dict[str, str]:
    """``{"search": ..., "keras": ..., "backend": ..., ...}``; a library not installed is left out."""
    found = {"search": _version("search") or "unknown"}
    for name in LIBRARIES:
        version = _version(name)
        if version:
            found[name] = version
    found["backend"] = keras_backend()
    return found


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
