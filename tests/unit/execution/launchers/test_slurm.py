"""The batch script `search slurm` writes: its directives, the store URL without its password (a
password file beside it holds that), deploy/slurm/worker.sbatch kept as the code writes it, and
the refusals (a bad --time, no sbatch here) as one line each."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from search.errors import SearchError
from search.execution.launchers import job_of_this_process
from search.execution.launchers.slurm import sbatch_script, submit
from search.testing.cli import REPO

# deploy/slurm/worker.sbatch is this script (the README shows it; the test keeps it true).
EXAMPLE = dict(study="vgg", storage_url="postgresql://search@db-host/search", workers=8,
               gpus_per_worker=1, cpus_per_worker=8, mem="32G", time_limit="1-00:00:00",
               pgpass=Path("/home/you/slurm/vgg.pgpass"), log_dir=Path("/home/you/slurm"),
               python="/home/you/venv/bin/python")


def test_the_deploy_template_is_the_script_the_command_writes():
    assert (REPO / "deploy" / "slurm" / "worker.sbatch").read_text() == sbatch_script(**EXAMPLE)


def test_the_script_is_valid_bash_with_one_worker_per_array_task_and_a_gpu_each():
    text = sbatch_script(**EXAMPLE)
    assert "#SBATCH --array=0-7\n" in text and "#SBATCH --gres=gpu:1\n" in text
    assert "#SBATCH --time=1-00:00:00\n" in text and "#SBATCH --mem=32G\n" in text
    assert text.rstrip().endswith("exec /home/you/venv/bin/python -m search worker --study vgg")
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    cpu = sbatch_script("a b'c", "sqlite:///s.db", 2, gpus_per_worker=0)
    assert "--gres" not in cpu and "PGPASSFILE" not in cpu
    assert "--study 'a b'\"'\"'c'" in cpu and "#SBATCH --job-name=search-a_20b_27c\n" in cpu


def test_a_password_goes_to_a_private_file_never_into_the_script(tmp_path):
    script = tmp_path / "jobs" / "s.sbatch"
    job = submit("tiny", "postgresql://search:s3cr%3At@db:6543/search?connect_timeout=5", 3,
                 script=str(script), dry_run=True, gpus_per_worker=0)
    text = script.read_text()
    assert job.job_id is None and job.pgpass == script.with_suffix(".pgpass")
    assert "s3cr" not in text
    assert "export SEARCH_STORAGE='postgresql://search@db:6543/search?connect_timeout=5'\n" in text
    assert f"export PGPASSFILE={job.pgpass}\n" in text
    assert job.pgpass.read_text() == "db:6543:search:search:s3cr\\:t\n"  # libpq's escaping
    assert stat.S_IMODE(job.pgpass.stat().st_mode) == 0o600
    plain = submit("tiny", "postgresql://search@db/search", 1, script=str(tmp_path / "p.sbatch"),
                   dry_run=True)
    assert plain.pgpass is None and not (tmp_path / "p.pgpass").exists()


def test_refusals_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(SearchError, match=r"--time '90 min': expected Slurm's"):
        submit("tiny", "sqlite:///s.db", 1, script=str(tmp_path / "s.sbatch"), time_limit="90 min")
    with pytest.raises(SearchError, match=r"--sbatch-option '--account=x\\nrm -rf /': expected one"):
        submit("tiny", "sqlite:///s.db", 1, script=str(tmp_path / "s.sbatch"),
               sbatch_options=("--account=x\nrm -rf /",))
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on this machine
    with pytest.raises(SearchError, match=r"sbatch not found: run `search slurm` on a Slurm login "
                                          r"node \(the batch script is written: .*s\.sbatch\)"):
        submit("tiny", "sqlite:///s.db", 1, script=str(tmp_path / "s.sbatch"))


def test_sbatch_refusing_the_job_is_one_line_with_its_reason(tmp_path, monkeypatch):
    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/sh\necho 'sbatch: error: Invalid partition name specified' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SearchError, match=r"^sbatch refused the job: sbatch: error: Invalid partition "
                                          r"name specified \(batch script: "):
        submit("tiny", "sqlite:///s.db", 1, script=str(tmp_path / "s.sbatch"), partition="nope")


def test_the_job_of_this_process_is_slurms_array_task(monkeypatch):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert job_of_this_process() is None
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    assert job_of_this_process() == "41"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert job_of_this_process() == "40_2"


def test_pinned_workers_carry_their_pins_on_the_worker_line():
    text = sbatch_script("vgg", "sqlite:///s.db", 2, gpus_per_worker=0,
                         pins={"--space": "/home/you/spaces/my vgg.py", "--data": "cifar100"})
    assert text.rstrip().endswith("--study vgg --space '/home/you/spaces/my vgg.py' --data cifar100")
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
