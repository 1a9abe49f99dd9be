"""The fixtures both test sets use (tests/unit and tests/e2e); the helpers are in search/testing/."""

import os
import subprocess
import tempfile
import time

import pytest

# The helpers assert too: rewritten like a test's asserts, their failures show the values.
pytest.register_assert_rewrite("search.testing")

from search.testing.spaces import TINY_SPACE  # after the rewrite is registered

# The temporary folder before any test gives itself one of its own (no_worker_outlives_the_test):
# the session's PostgreSQL server lives there, where the postgres user (the server's, when the
# tests run as root) can reach it; a test's own folder is under pytest's, which only we can.
SESSION_TMP = tempfile.gettempdir()


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
    """A PostgreSQL server on a free loopback port for the whole session (search/testing/postgres.py);
    the test is skipped, with the reason, only where no server can be installed and started."""
    from search.testing.postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer(parent=SESSION_TMP).start()
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


@pytest.fixture
def fresh_caches():
    """The data set caches of this process emptied before and after the test."""
    from search.testing.datasets import clear_caches

    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def cifar(tmp_path):
    """A small CIFAR-100 folder in its published format: its path."""
    from search.testing.datasets import write_cifar100

    return str(write_cifar100(tmp_path))


@pytest.fixture(autouse=True)
def config_home_of_the_test(tmp_path_factory, monkeypatch):
    """Every test has a config folder of its own (XDG_CONFIG_HOME: where the stored sources already
    run are remembered, search.execution.trust), never the user's."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    return folder


@pytest.fixture(autouse=True)
def no_worker_outlives_the_test(tmp_path_factory, monkeypatch):
    """Every test runs with a temporary folder of its own (TMPDIR, for this process and the
    commands it starts); after it, no pool worker started under it is still running (waited
    for a while: one may be finishing its trial) and no ``search-*-workers-*`` folder is left."""
    folder = str(tmp_path_factory.mktemp("tmpdir"))
    monkeypatch.setenv("TMPDIR", folder)
    monkeypatch.setattr(tempfile, "tempdir", folder)
    yield
    from search.testing.studies import pool_workers_under, worker_log_folders

    deadline = time.monotonic() + 60
    while pool_workers_under(folder) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = pool_workers_under(folder)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"pool workers outlived the test: {left}"
    assert not worker_log_folders(folder), f"worker log folders left behind: {worker_log_folders(folder)}"
