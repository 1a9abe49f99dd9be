"""deploy/kubernetes/: the kustomize base validates against Kubernetes' own schemas (offline,
``kubernetes-validate``, strict), its workers request a GPU each, its password comes from a Secret
only, and every command its containers run is run here, outside a cluster, against the real
PostgreSQL server of search/testing/postgres.py, in their order: wait for the store, create the
study, wait for the study, work on it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from search.cli import main
from search.testing.cli import REPO

KUBE = REPO / "deploy" / "kubernetes"
IMAGE_ENTRYPOINT = ["search", "worker"]  # docker/Dockerfile's ENTRYPOINT (test_docker checks it)
IN_CLUSTER_URL = "postgresql://search@search-db:5432/search"


def _resources() -> list[dict]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"]
            for doc in yaml.safe_load_all((KUBE / name).read_text())]


def _by_name(kind: str, name: str) -> dict:
    return next(d for d in _resources() if d["kind"] == kind and d["metadata"]["name"] == name)


def _containers(doc: dict, key: str = "containers") -> list[dict]:
    return doc["spec"]["template"]["spec"].get(key, [])


def _argv(container: dict) -> list[str]:
    """What the container runs: its command (else the image's entry point) and its args."""
    command = container.get("command") or (IMAGE_ENTRYPOINT if container["image"] == "search-worker"
                                           else [])
    return [*command, *container.get("args", [])]


def test_every_manifest_validates_against_the_kubernetes_schemas():
    version = kubernetes_validate.latest_version()
    docs = _resources()
    assert {d["kind"] for d in docs} == {"PersistentVolumeClaim", "Deployment", "Service", "Job"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error
    broken = _by_name("Job", "search-workers")
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo: strict catches it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_workers_are_an_indexed_job_with_a_gpu_each_and_the_password_from_a_secret():
    workers = _by_name("Job", "search-workers")
    assert workers["spec"]["completionMode"] == "Indexed"
    for job in (workers, _by_name("Job", "search-study")):
        assert _containers(job)[0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    volume = _by_name("Deployment", "search-db")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == _by_name(
        "PersistentVolumeClaim", "search-db-data")["metadata"]["name"]
    text = "".join(p.read_text() for p in KUBE.glob("*.yaml"))
    assert re.findall(r"postgresql://\S+", text) == [IN_CLUSTER_URL] * 2  # no password in a URL
    for doc in _resources():
        if doc["kind"] in ("Job", "Deployment"):
            for c in _containers(doc) + _containers(doc, "initContainers"):
                for var in c.get("env", []):
                    if "PASSWORD" in var["name"]:
                        assert var["valueFrom"]["secretKeyRef"] == {"name": "search-db", "key": "password"}


def _cli_has(argv: list[str]) -> None:
    result = CliRunner().invoke(main, [argv[1], "--help"])
    assert result.exit_code == 0, result.output  # the command exists
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert re.search(rf"(^|\s){re.escape(flag)}[\s,=]", result.output), f"search {argv[1]} has no {flag}"


def test_the_commands_run_outside_a_cluster_in_order(postgres_server, pg_url, tiny_space):
    """Each container's command as written, with the cluster's address of the store made the test
    server's (and the study's space the tiny one, its budget one trial: the flow, not a real run)."""
    database = pg_url.rsplit("/", 1)[1]
    here = f"postgresql://search@127.0.0.1:{postgres_server.port}/{database}"

    def outside(text: str) -> str:
        return (text.replace(IN_CLUSTER_URL, here).replace("-h search-db -p 5432", f"-h 127.0.0.1 -p "
                f"{postgres_server.port}").replace("-d search", f"-d {database}"))

    def env_of(container: dict) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "SEARCH_STORAGE"}
        for var in container.get("env", []):
            # the Secret's key is the test server's password
            env[var["name"]] = outside(var["value"]) if "value" in var else postgres_server.password
        env["PATH"] = f"{postgres_server.bin}:{os.path.dirname(sys.executable)}:{env['PATH']}"
        return env

    def run(container: dict, replace=lambda argv: argv, background=False):
        argv = replace([outside(a) for a in _argv(container)])
        if argv[0] == "search":
            _cli_has(argv)
            argv = [sys.executable, "-m", "search", *argv[1:]]
        if background:
            return subprocess.Popen(argv, env=env_of(container), cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        return subprocess.run(argv, env=env_of(container), cwd=REPO, capture_output=True, text=True,
                              timeout=300)

    study_job, workers_job = _by_name("Job", "search-study"), _by_name("Job", "search-workers")
    store_ready = run(_containers(study_job, "initContainers")[0])
    assert store_ready.returncode == 0 and "accepting connections" in store_ready.stdout
    waiting = run(_containers(workers_job, "initContainers")[0], background=True)
    time.sleep(4)
    assert waiting.poll() is None  # no study yet: the workers' pods wait

    study = _containers(study_job)[0]
    assert (REPO / study["workingDir"].replace("/opt/search", str(REPO)) / "spaces" / "cnn.py").exists()

    def tiny(argv):
        argv = [str(tiny_space) if a == "spaces/cnn.py" else a for a in argv]
        return [*argv[:argv.index("--trials") + 1], "1", *argv[argv.index("--trials") + 2:]]

    created = run(study, tiny)
    assert created.returncode == 0, created.stderr[-2000:]
    assert "next: search analyze --study cnn" in created.stdout
    assert waiting.wait(timeout=60) == 0  # the study is there: the workers start
    waiting.communicate()
    worker = run(_containers(workers_job)[0])
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert "budget spent: ran 0 trials" in worker.stdout  # the one trial ran: nothing lost, no extra
    assert shlex.join(_argv(_containers(workers_job)[0])) == "search worker --study cnn"
