"""docker/: the compose file and the image run only commands and flags the CLI has, the workers
scale with a GPU each, no password is committed, and the workers' database role is least-privilege
(checked on the real PostgreSQL server of search/testing/postgres.py)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import optuna
import pytest
import sqlalchemy
import yaml
from click.testing import CliRunner

from search import storage
from search.cli import main
from search.testing.cli import REPO

DOCKER = REPO / "docker"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _entrypoint() -> list[str]:
    line = next(line for line in (DOCKER / "Dockerfile").read_text().splitlines()
                if line.startswith("ENTRYPOINT"))
    return yaml.safe_load(line.removeprefix("ENTRYPOINT"))


def _argv(service: dict) -> list[str]:
    """What the service's container runs: its entrypoint (or the image's) and its command."""
    entry = service.get("entrypoint", _entrypoint())
    command = service.get("command", [])
    entry = shlex.split(entry) if isinstance(entry, str) else entry
    command = shlex.split(command) if isinstance(command, str) else command
    return [*entry, *command]


def _cli_help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", ["coordinator", "worker"])
def test_every_command_the_compose_file_runs_exists_in_the_cli(compose, name):
    argv = _argv(compose["services"][name])
    assert argv[0] == "search"
    subcommand = argv[1]
    help_text = _cli_help(subcommand)  # fails if the command does not exist
    for flag in [a for a in argv[2:] if a.startswith("--")]:
        assert re.search(rf"(^|\s){re.escape(flag)}[\s,=]", help_text), f"search {subcommand} has no {flag}"
    assert "--study" in argv


def test_the_image_is_a_tensorflow_gpu_worker():
    text = (DOCKER / "Dockerfile").read_text()
    base = next(line for line in text.splitlines() if line.startswith("FROM")).split()[1]
    assert base.startswith("tensorflow/tensorflow:") and base.endswith("-gpu")
    assert _entrypoint() == ["search", "worker"]
    # the project, with its Keras backend and its Postgres driver
    assert re.search(r"pip install .*\.\[tensorflow,postgres\]", text)


def test_workers_scale_with_a_gpu_each(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    # what `docker compose up --scale worker=N` needs: no fixed name, no host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert compose["services"]["postgres"]["image"].startswith("postgres:")


def test_no_password_is_committed(compose):
    text = (DOCKER / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    for url in re.findall(r"postgresql://\S+", text):  # the passwords come from the env file
        assert re.match(r"postgresql://\w+:\$\{\w*PASSWORD", url), url
    ignored = subprocess.run(["git", "check-ignore", "docker/.env"], cwd=REPO, capture_output=True,
                             check=False)
    assert ignored.returncode == 0, "docker/.env is not ignored by git"
    assert "worker" in compose["services"]["worker"]["environment"]["SEARCH_STORAGE"]


def test_the_workers_role_uses_rows_and_cannot_change_the_schema(postgres_server):
    env = dict(os.environ, POSTGRES_USER="search", PGHOST="127.0.0.1", PGPORT=str(postgres_server.port),
               PGPASSWORD=postgres_server.password, SEARCH_OWNER_PASSWORD="owner-pw",
               SEARCH_WORKER_PASSWORD="worker-pw",
               PATH=f"{postgres_server.bin}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(DOCKER / "initdb.sh")], env=env, capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    owner_url = postgres_server.url("search", "search_owner", "owner-pw")
    worker_url = postgres_server.url("search", "search_worker", "worker-pw")
    # the coordinator (owner) creates the tables and the study
    owner = storage.open_storage(owner_url)
    records = storage.StudyRecords(owner.engine)
    storage.WorkerRegistry(owner.engine)
    records.add(storage.StudyRecord(study_name="s", space_path="x.py", space_sha256="0" * 64,
                                    space_source="", config={}, budget=2))
    optuna.create_study(study_name="s", storage=owner)
    # a worker does all it does with the restricted role
    store = storage.open_storage(worker_url, heartbeat_interval=1, grace_period=2)
    registry = storage.WorkerRegistry(store.engine)
    worker_id = registry.register("s", "host", 1, 0, "0")
    assert storage.StudyRecords(store.engine).claim("s")
    study = optuna.load_study(study_name="s", storage=store)
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1e-1)
    store.record_heartbeat(trial._trial_id)
    trial.report(0.5, 0)
    study.tell(trial, 0.5)
    registry.set_state(worker_id, "exited")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    # ... and cannot create, alter or drop tables
    with store.engine.connect() as conn:
        for ddl in ("CREATE TABLE evil (x int)", "DROP TABLE trials",
                    "ALTER TABLE search_studies ADD COLUMN evil int"):
            with pytest.raises(sqlalchemy.exc.ProgrammingError, match="permission denied|must be owner"):
                conn.exec_driver_sql(ddl)
            conn.rollback()
