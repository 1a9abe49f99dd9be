import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A space small enough that a trial takes about a second on two CPU cores.
TINY_SPACE = textwrap.dedent('''
    import keras
    from search import data
    def build(hp):
        ds = data.current()
        model = keras.Sequential([
            keras.Input(shape=ds.input_shape),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"),
            keras.layers.Dense(ds.num_classes, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 3e-2, sampling="log")),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [32, 64]), **kwargs)
''')


def run_cli(*args, env=None, cwd=None, timeout=600):
    """Run the ``search`` CLI in a fresh process, as a user would."""
    full_env = dict(os.environ)
    full_env.pop("SEARCH_STORAGE", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


def error_lines(result) -> list[str]:
    """stderr lines that are ours (not the backend's C++ start-up chatter)."""
    return [line for line in result.stderr.splitlines()
            if line.strip() and "absl" not in line and "cudart" not in line and not line.startswith("I0000")
            and not line.startswith("W0000") and not line.startswith("E0000")]


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def tiny_space(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on a free loopback port for the whole session (tests/pg.py); the test
    is skipped, with the reason, only where no server can be installed and started."""
    from search.testing.postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer().start()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no PostgreSQL server for the tests: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres_server):
    """A fresh database on the session's server: its postgresql:// URL (with a password)."""
    return postgres_server.url(postgres_server.create_database())
