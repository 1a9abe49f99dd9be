"""Which accelerators this machine has, without importing a deep-learning framework."""

from __future__ import annotations

import os
import shutil
import subprocess

from search.errors import SearchError


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


# How many local worker processes a machine runs at most, so that a typo (--workers 1000) is one
# line instead of a fork that fails halfway: 16 a CPU core (a GPU worker, or one whose trials
# wait, needs little CPU; bench/store_scaling.py ran 32 on 2 cores), and as many as the free
# memory holds, a worker process taking about 0.4 GiB of its own before its first trial (private
# memory with TensorFlow and the digits loaded, measured here: 0.34 GiB; the libraries' pages
# are shared between the workers).
WORKERS_PER_CORE = 16
WORKER_MEMORY_BYTES = int(0.4 * 2**30)


def _free_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_limit() -> tuple[int, str]:
    """The most local worker processes this machine runs, and why (for the user)."""
    cores = os.cpu_count() or 1
    limit, why = cores * WORKERS_PER_CORE, f"{cores} CPU cores, {WORKERS_PER_CORE} workers a core"
    free = _free_memory_bytes()
    if free is not None:
        by_memory = max(1, free // WORKER_MEMORY_BYTES)
        why += f"; {free / 2**30:.1f} GiB of memory free, about {WORKER_MEMORY_BYTES / 2**30:.1f} GiB a worker"
        limit = min(limit, by_memory)
    return limit, why


def check_machine(count: int, asked: str) -> None:
    """Refuse more than :func:`machine_limit` local workers (one line: how many, and why)."""
    limit, why = machine_limit()
    if count > limit:
        raise SearchError(f"{asked}: this machine runs at most {limit} local workers ({why}); "
                          "run more on other machines with `search worker`")


# Environment every worker process gets: grow GPU memory on demand, so several workers can share
# one GPU (TensorFlow, JAX).
GROWTH_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def parse_gpus(text: str) -> list[str]:
    """``--gpus 0,1`` -> ["0", "1"]; ids are what ``CUDA_VISIBLE_DEVICES`` accepts (index or UUID)."""
    ids = [g.strip() for g in text.split(",")]
    if not text.strip() or any(not g for g in ids):
        raise SearchError(f"--gpus {text!r}: expected a comma-separated list of GPU ids, e.g. 0,1")
    if len(set(ids)) != len(ids):
        raise SearchError(f"--gpus {text!r}: a GPU is listed twice (use --per-gpu K to pack workers)")
    return ids


def plan_slots(gpus: str | None = None, per_gpu: int | None = None,
               workers: int | None = None) -> list[str | None]:
    """The GPU of each local worker process (None: a CPU slot).

    ``--gpus`` names the GPUs (default: every visible one); ``--per-gpu K`` packs K workers on
    each; ``--workers N`` instead spreads N workers over the GPUs in turn. Without any GPU, each
    slot is a CPU worker (``--per-gpu`` or ``--workers`` of them, else one); ``workers`` and
    ``per_gpu`` are checked as options (``search.options``).
    """
    if workers is not None and per_gpu is not None:
        raise SearchError("give --workers N or --per-gpu K, not both")
    if gpus is not None:
        ids = parse_gpus(gpus)
        known = visible_gpus()
        unknown = [g for g in ids if known and g.isdigit() and g not in known]
        if unknown:
            raise SearchError(f"--gpus: no GPU {', '.join(unknown)} on this machine "
                              f"(visible: {', '.join(known)})")
    else:
        ids = visible_gpus()
    if workers is not None:
        asked = f"--workers {workers}"
    elif per_gpu is not None:
        asked = f"--per-gpu {per_gpu}" + (f" on {len(ids)} GPUs" if len(ids) > 1 else "")
    else:
        asked = f"{len(ids)} GPUs"
    count = workers or (per_gpu or 1) * max(1, len(ids))
    check_machine(count, asked)  # before the slots are listed: --workers 10**12 is a line, not a MemoryError
    if not ids:
        return [None] * count
    if workers is not None:
        return [ids[i % len(ids)] for i in range(workers)]
    return [g for g in ids for _ in range(per_gpu or 1)]


def worker_env(gpu: str | None, base: dict | None = None) -> dict:
    """The environment of a worker process pinned to ``gpu`` (None: no GPU change)."""
    env = dict(os.environ if base is None else base)
    for key, value in GROWTH_ENV.items():
        env.setdefault(key, value)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def pin_this_process(gpu: str | None) -> None:
    """Pin this process to ``gpu`` before its backend touches a device (backends read these
    variables when they first initialise the GPU, not at import)."""
    os.environ.update({k: v for k, v in worker_env(gpu).items()
                       if k in GROWTH_ENV or k == "CUDA_VISIBLE_DEVICES"})


def pinned_gpu() -> str | None:
    """The GPU this process is pinned to, as its ``CUDA_VISIBLE_DEVICES`` says (None: unpinned)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return value if value not in (None, "", "-1") else None
