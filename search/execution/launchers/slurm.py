"""``search slurm``: a Slurm job array of workers, one array task per worker (one GPU each).

The batch script is written to a file (``slurm/<study>.sbatch`` unless named) and submitted with
``sbatch``; each array task runs ``search worker --study NAME`` and takes trials until the study's
budget is spent, as any worker does. The store URL in the script carries no password: when the
URL given has one, it goes into a password file (libpq's ``PGPASSFILE``, mode 600) beside the
script, which the script names; nothing with the password is put on a command line or in the
job's environment. ``search status`` lists the workers by their Slurm job id (``1234_2``).

A task cancelled mid-trial (``scancel``: SIGTERM) queues its trial again with the same parameters
and exits; a task killed outright leaves a trial that the other workers fail after the grace
period and retry (``search.execution.faults``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from search.errors import SearchError
from search.options import STORAGE_ENV, study_file_name
from search.storage import mask_url, without_password

SBATCH_TIMEOUT_S = 60
# Slurm's time formats: MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$")


@dataclass
class SlurmJob:
    """A submitted (or, with ``dry_run``, only written) job array."""

    study: str
    workers: int
    script: Path
    job_id: str | None  # None: written, not submitted
    pgpass: Path | None  # the password file the script names, when the URL had a password


def sbatch_script(study: str, storage_url: str, workers: int, *, gpus_per_worker: int = 1,
                  cpus_per_worker: int = 1, mem: str | None = None, time_limit: str | None = None,
                  partition: str | None = None, sbatch_options: tuple[str, ...] = (),
                  pgpass: Path | None = None, log_dir: Path | None = None,
                  python: str | None = None, pins: dict[str, str] | None = None) -> str:
    """The batch script of a job array of ``workers`` workers on ``study``. ``storage_url`` must
    carry no password (:func:`search.storage.without_password`); ``pgpass`` is the file with it.
    ``pins``: the worker's pinning options (``{"--space": FILE, ...}``) every task runs with."""
    job_name = "search-" + re.sub(r"[^A-Za-z0-9_.-]", "_", study_file_name(study, 60))
    directives = [f"--job-name={job_name}", f"--array=0-{workers - 1}", "--ntasks=1",
                  f"--cpus-per-task={cpus_per_worker}"]
    if gpus_per_worker:
        directives.append(f"--gres=gpu:{gpus_per_worker}")
    if mem:
        directives.append(f"--mem={mem}")
    if time_limit:
        directives.append(f"--time={time_limit}")
    if partition:
        directives.append(f"--partition={partition}")
    if log_dir is not None:
        directives.append(f"--output={log_dir}/%x-%A_%a.out")
    directives += sbatch_options
    lines = ["#!/bin/bash",
             f"# {workers} search workers for study {study!r}, one per array task"
             + (f", {gpus_per_worker} GPU each." if gpus_per_worker else ", CPU only."),
             "# Written by `search slurm`; submit it again with `sbatch FILE` for more workers.",
             *(f"#SBATCH {d}" for d in directives),
             "",
             "# The store URL carries no password" + (": the password file below holds it."
                                                       if pgpass else "."),
             f"export {STORAGE_ENV}={shlex.quote(storage_url)}"]
    if pgpass is not None:
        lines.append(f"export PGPASSFILE={shlex.quote(str(pgpass))}")
    pinned = "".join(f" {option} {shlex.quote(value)}" for option, value in (pins or {}).items())
    lines += ["# SIGTERM (scancel, the time limit) queues the running trial again; see README.",
              *(["# Each task runs only the space file named below (read where the task runs)."]
                if pins and "--space" in pins else []),
              f"exec {shlex.quote(python or sys.executable)} -m search worker "
              f"--study {shlex.quote(study)}{pinned}", ""]
    return "\n".join(lines)


def check_time_limit(value: str | None) -> None:
    if value is not None and not _TIME.match(value):
        raise SearchError(f"--time {value!r}: expected Slurm's MINUTES, HH:MM:SS or D-HH:MM:SS")


def write_pgpass(path: Path, line: str) -> None:
    """A password file only its owner can read (libpq ignores one that others can)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(line + "\n")
    os.chmod(path, 0o600)


def submit(study: str, storage_url: str, workers: int, *, script: str | None = None,
           dry_run: bool = False, **script_options) -> SlurmJob:
    """Write the batch script of ``workers`` workers on ``study`` (a study in the store at
    ``storage_url``) and submit it with ``sbatch`` (unless ``dry_run``). ``pins`` (in
    ``script_options``): the pinning options every worker runs with, already checked against the
    study by the caller."""
    if workers < 1:
        raise SearchError(f"--workers must be at least 1 (got {workers})")
    check_time_limit(script_options.get("time_limit"))
    for option in script_options.get("sbatch_options", ()):
        if not option.startswith("-") or not option.isprintable():
            raise SearchError(f"--sbatch-option {option!r}: expected one sbatch option on one line, "
                              "e.g. --account=lab")
    path = Path(script or Path("slurm") / f"{study_file_name(study)}.sbatch").absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SearchError(f"cannot write the batch script {path}: {exc.strerror or exc}") from None
    plain_url, _, pgpass_line = without_password(storage_url)
    pgpass = None
    if pgpass_line is not None:
        pgpass = path.with_suffix(".pgpass")
        write_pgpass(pgpass, pgpass_line)
    path.write_text(sbatch_script(study, plain_url, workers, pgpass=pgpass, log_dir=path.parent,
                                  **script_options))
    if dry_run:
        return SlurmJob(study, workers, path, None, pgpass)
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SearchError(f"sbatch not found: run `search slurm` on a Slurm login node (the batch "
                          f"script is written: {path})")
    env = {k: v for k, v in os.environ.items() if k != STORAGE_ENV}  # the script sets it, plain
    try:
        result = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True,
                                env=env, timeout=SBATCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SearchError(f"sbatch did not answer in {SBATCH_TIMEOUT_S} s (is slurmctld up?); "
                          f"the batch script is {path}") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise SearchError(f"sbatch refused the job: {mask_url(reason)} (batch script: {path})")
    job_id = result.stdout.strip().split(";")[0]  # --parsable: "JOBID[;CLUSTER]"
    return SlurmJob(study, workers, path, job_id, pgpass)
