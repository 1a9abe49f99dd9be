"""`search slurm` on a real single-node Slurm cluster (search/testing/slurm.py: munged, slurmctld
and slurmd on loopback) against a real PostgreSQL study: a job array of 3 CPU workers runs the
study's budget exactly, `scancel` of one array task mid-trial loses nothing (its trial is run
again), the password is on no command line, and `search status` lists the workers by job id."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from search.testing.cli import run_cli
from search.testing.faults import assert_killed_trial_retried
from search.testing.studies import (
    running_worker_after_a_completed_trial,
    trials_of,
    wait_for,
    worker_rows,
)

pytestmark = pytest.mark.slow

EPOCHS = 8


@pytest.fixture(scope="module")
def slurm_cluster():
    from search.testing.slurm import SlurmCluster, SlurmUnavailable

    try:
        cluster = SlurmCluster().start()
    except (SlurmUnavailable, OSError) as exc:
        pytest.skip(f"no Slurm cluster for the tests: {exc}")
    try:
        yield cluster
    finally:
        cluster.destroy()


def _create_study(space: Path, url: str, trials: int) -> None:
    from search.commands.start import prepare
    from search.options import start_options

    # A grace of several heartbeats: on 2 busy cores (the e2e set runs two test files at once) a
    # worker starved for a few seconds must not be taken for dead.
    prepare(start_options(str(space), storage=url, trials=trials, epochs=EPOCHS, pruner="none",
                          heartbeat=2, grace=20))


def _command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        try:
            lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return lines


def test_a_slurm_array_runs_the_budget_exactly_and_a_cancelled_task_loses_nothing(
        slurm_cluster, tiny_space, pg_url, postgres_server, tmp_path):
    budget = 6
    _create_study(tiny_space, pg_url, budget)
    script = tmp_path / "jobs" / "tiny.sbatch"
    env = {"SLURM_CONF": str(slurm_cluster.conf)}
    result = run_cli("slurm", "--study", "tiny", "--storage", pg_url, "--workers", "3",
                     "--gpus-per-worker", "0", "--script", str(script), "--space", str(tiny_space),
                     env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    job = result.stdout.split("submitted Slurm job ")[1].split(":")[0]
    assert f"3 workers on study 'tiny' (array tasks {job}_0..{job}_2" in result.stdout
    # The password is in the password file only (mode 600), never in the script or a command line.
    text = script.read_text()
    pgpass = script.with_suffix(".pgpass")
    assert postgres_server.password not in text and "--gres" not in text and "--array=0-2" in text
    assert f"export PGPASSFILE={pgpass}" in text
    assert text.rstrip().endswith(f"--study tiny --space {tiny_space.absolute()}")  # pinned tasks
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    assert pgpass.read_text().strip().endswith(":" + postgres_server.password)

    def mid_trial():
        return running_worker_after_a_completed_trial(pg_url, EPOCHS)

    try:
        row = wait_for(mid_trial, 150, "a Slurm worker in the middle of a trial")
    except pytest.fail.Exception as exc:  # say what the cluster and the study were doing
        states = sorted((t.number, t.state.name, len(t.intermediate_values)) for t in trials_of(pg_url))
        queue = slurm_cluster.run("squeue", "-o", "%i %T %r", check=False).stdout
        logs = sorted(tmp_path.rglob("*.out"))
        tails = {p.name: p.read_text()[-600:] for p in logs}
        pytest.fail(f"{exc}; trials {states}; squeue {queue!r}; task logs {tails}")
    slurm_cluster.run("scancel", row.job)  # at once, while its trial has epochs to go
    killed = row.trial_number
    completed_before = {t.number: t.value for t in trials_of(pg_url) if t.state.name == "COMPLETE"}
    assert row.job.startswith(f"{job}_")
    assert not [line for line in _command_lines() if postgres_server.password in line]
    status = run_cli("status", "--study", "tiny", "--storage", pg_url)
    assert "slurm job" in status.stdout and f"{job}_" in status.stdout, status.stdout

    wait_for(lambda: not slurm_cluster.jobs(), 240, "the job array to finish")
    assert_killed_trial_retried(pg_url, killed, completed_before, budget)
    cancelled = [t for t in trials_of(pg_url) if t.number == killed][0]
    assert cancelled.user_attrs.get("interrupted") is True  # SIGTERM: it queued its trial itself
    rows = worker_rows(pg_url)
    assert sorted(r.job for r in rows) == [f"{job}_{i}" for i in range(3)]
    assert {r.state for r in rows if r.job == row.job} == {"interrupted"}
    assert all(r.state == "exited" for r in rows if r.job != row.job)
    listed = json.loads(run_cli("status", "--study", "tiny", "--storage", pg_url,
                                "--format", "json").stdout)
    assert sorted(w["job"] for w in listed["workers"]) == [f"{job}_{i}" for i in range(3)]
