"""``search start ... --ray ADDRESS|auto``: the study's workers placed as Ray tasks on a Ray cluster.

Ray only places processes: each task (``num_gpus`` of a GPU: ``1/K`` with ``--per-gpu K``, so K
workers pack on one GPU; none on a cluster without GPUs) starts one worker process, the same
``python -m search.execution.pool`` a local pool starts, on the node Ray chose, with the store URL
in its environment (never on a command line), and waits for it. The study store stays the one
source of truth: the budget, the trials, retries and the workers table are the store's, and the
coordinator here reaps stale trials and shows progress as for local workers.

A worker killed mid-trial loses nothing: its trial is failed after the grace period and retried
(``search.execution.faults``). A Ray worker process that dies takes no trial with it either: its
worker process sees its parent gone, finishes the running trial and exits. Ctrl-C cancels the
tasks; each stops its worker as the local pool does (the running trial is queued again).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from search.errors import SearchError
from search.execution.devices import worker_env
from search.execution.faults import fail_stale_trials, work_on
from search.execution.pool import (
    INTERRUPT_GRACE_SECONDS,
    POLL_SECONDS,
    TERMINATE_GRACE_SECONDS,
    _exit_text,
    check_store_room,
    crash_cause,
    worker_command,
)
from search.options import STORAGE_ENV
from search.storage import mask_url, url_of
from search.study import StoredStudy, StudySnapshot, snapshot

CONNECT_TIMEOUT_S = 10


@dataclass
class RayWorkerExit:
    """How one Ray-placed worker ended: where it ran, its exit status, why (when it failed)."""

    slot: int
    host: str
    pid: int
    code: int
    reason: str | None = None

    @property
    def line(self) -> str:
        return (f"Ray worker {self.slot} (pid {self.pid} on {self.host}) {_exit_text(self.code)}: "
                f"{self.reason or 'it wrote no error'}")


def run_placed_worker(study: str, storage_url: str, slot: int, space_sha256: str | None,
                      config_sha256: str | None) -> RayWorkerExit:
    """The body of one Ray task: a worker process on this node until the study's budget is spent
    (its parent, this Ray worker, is its pool: if this process dies, the worker finishes its trial
    and exits)."""
    env = worker_env(None)  # Ray set CUDA_VISIBLE_DEVICES to the task's GPU, if it has one
    env[STORAGE_ENV] = storage_url
    fd, log_path = tempfile.mkstemp(prefix=f"search-ray-worker-{slot}-", suffix=".log")
    try:
        with os.fdopen(fd, "w") as log:
            proc = subprocess.Popen(worker_command(study, slot, space_sha256, config_sha256),
                                    env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait()
        except BaseException:  # ray.cancel: stop the worker as a local pool does
            _stop(proc)
            raise
        return RayWorkerExit(slot, socket.gethostname(), proc.pid, code,
                             crash_cause(log_path) if code else None)
    finally:
        os.remove(log_path)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (finish the epoch, queue the trial again), then SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, INTERRUPT_GRACE_SECONDS), (signal.SIGTERM, TERMINATE_GRACE_SECONDS),
                       (signal.SIGKILL, TERMINATE_GRACE_SECONDS)):
        try:
            proc.send_signal(sig)
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def _ray():
    try:
        import ray
    except ImportError:
        raise SearchError('--ray needs Ray on this machine: pip install -e ".[ray]"') from None
    return ray


@dataclass
class RayPlacement:
    """Where the workers go: ``workers`` Ray tasks on the cluster at ``address``, each with
    ``num_gpus`` of a GPU (0: CPU workers)."""

    address: str
    workers: int
    num_gpus: float


def plan(cluster_gpus: float, workers: int | None, per_gpu: int | None) -> tuple[int, float]:
    """How many Ray workers and what share of a GPU each: ``--per-gpu K`` packs K on a GPU
    (``num_gpus`` 1/K), ``--workers N`` places N (default: every GPU of the cluster, K each);
    a cluster without GPUs runs CPU workers (``--workers``, ``--per-gpu``, else one)."""
    if workers is not None and per_gpu is not None:
        raise SearchError("give --workers N or --per-gpu K, not both")
    if not cluster_gpus:
        return workers or per_gpu or 1, 0.0
    return workers or max(1, int(cluster_gpus * (per_gpu or 1))), 1.0 / (per_gpu or 1)


def _check_reachable(address: str) -> None:
    """A cluster address (``HOST[:PORT]``, Ray's default port 6379) that accepts no connection is
    refused at once: Ray itself would retry for minutes."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "6379")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except ValueError:
        raise SearchError(f"--ray {address!r}: expected HOST:PORT of the head node, or auto") from None
    except OSError as exc:
        raise SearchError(f"--ray {address}: cannot reach the Ray cluster: "
                          f"{exc.strerror or exc}; is `ray start --head` running there?") from None


def place(address: str, workers: int | None = None, per_gpu: int | None = None) -> RayPlacement:
    """Connect to the Ray cluster at ``address`` (``auto``: the one this machine belongs to) and
    plan the workers on its GPUs (:func:`plan`); a cluster that cannot be reached is one line."""
    ray = _ray()
    _check_reachable(address)
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False,
                 ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SearchError(f"--ray {address}: cannot reach the Ray cluster: {first}") from None
    try:
        count, share = plan(ray.cluster_resources().get("GPU", 0.0), workers, per_gpu)
    except BaseException:
        ray.shutdown()
        raise
    return RayPlacement(address, count, share)


def run_ray_workers(stored: StoredStudy, placement: RayPlacement,
                    on_progress: Callable[[StudySnapshot], None] | None = None,
                    space_sha256: str | None = None) -> tuple[StudySnapshot, list[RayWorkerExit]]:
    """Run the study's workers as Ray tasks (:func:`place`) and follow them until they all ended:
    reap stale trials, show progress. Returns the final snapshot and how each worker ended."""
    ray = _ray()
    try:
        check_store_room(stored, placement.workers)
        reaper = work_on(stored)
        task = ray.remote(num_gpus=placement.num_gpus, max_retries=0)(run_placed_worker)
        pending = [task.remote(stored.name, url_of(stored.storage), slot, space_sha256,
                               stored.record.config_sha256) for slot in range(placement.workers)]
        refs = list(pending)
        try:
            while pending:
                _, pending = ray.wait(pending, timeout=POLL_SECONDS, num_returns=len(pending))
                fail_stale_trials(reaper.study)
                if on_progress is not None:
                    on_progress(snapshot(stored))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)  # each task stops its worker; its trial is queued again
            ray.wait(pending, num_returns=len(pending), timeout=INTERRUPT_GRACE_SECONDS + 30)
            raise
        exits = []
        for slot, ref in enumerate(refs):
            try:
                exits.append(ray.get(ref))
            except ray.exceptions.RayError as exc:  # the Ray worker itself died
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                exits.append(RayWorkerExit(slot, "?", 0, -1, mask_url(first)))
        final = snapshot(stored)
        if on_progress is not None:
            on_progress(final)
        failures = [e for e in exits if e.code]
        if failures and not final.done:
            raise SearchError(f"{len(failures)} of {len(exits)} Ray workers exited with an error; "
                              f"the first: {failures[0].line}")
        return final, exits
    finally:
        ray.shutdown()
