"""Launchers: what starts a study's workers where. Local worker processes are
``search.execution.pool``'s; ``slurm`` submits a job array of workers to a Slurm cluster.

Whatever starts them, the workers are plain ``search worker`` processes: the study store stays the
one source of truth (budget, trials, retries), and a launcher only places processes.
"""

from __future__ import annotations

import os


def job_of_this_process() -> str | None:
    """The batch job this process runs in, as its scheduler names it: Slurm's ``1234_2`` (array
    job 1234, task 2) or ``1234`` (a plain job); None outside one."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None
