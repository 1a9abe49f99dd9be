"""Timers around the calls a ``search`` worker makes per trial (installed by ``sitecustomize``).

Each wrapped call appends one event ``(name, start, seconds, depth, trial, thread)``: ``start`` is
``time.time()``, ``depth`` counts wrapped calls already open on the thread (0 for a call made by the
worker loop itself, so nested calls such as the storage reads inside ``tell`` are not counted
twice), ``trial`` is the number of the trial the worker asked for last. At exit the events, the
process's CPU time and the transient store errors that ``storage.retrying`` rode out (``database is
locked``, lost connections) go to ``$BENCH_PROBE_DIR/probe-<pid>.json``.

Wrapped: Optuna's ``Study.ask``/``tell`` and ``Trial.report``/``should_prune``/``set_user_attr``;
search's claim of a budget slot, reaper, worker state updates, heartbeats, ``run_trial`` and
``record``, the bridge's value lookup (one ``trial.suggest_*`` per active parameter), the runner's
``clear_session``/``gc.collect``/seeding, and a function space's ``build``/``fit``.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import resource
import sys
import threading
import time
import types

EVENTS: list[tuple] = []
TRANSIENT: list[dict] = []
STATE = {"trial": None, "started": time.time()}
_local = threading.local()


def _timed(name: str, fn, on_result=None):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        depth = getattr(_local, "depth", 0)
        _local.depth = depth + 1
        start = time.time()
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            _local.depth = depth
            EVENTS.append((name, start, time.perf_counter() - t0, depth, STATE["trial"],
                           threading.current_thread().name))
            raise
        seconds = time.perf_counter() - t0
        _local.depth = depth
        if on_result is not None:
            on_result(result)  # ask: the event belongs to the trial it returned
        EVENTS.append((name, start, seconds, depth, STATE["trial"], threading.current_thread().name))
        return result

    wrapper.__bench_probe__ = True
    return wrapper


def _patch(owner, attr: str, name: str, on_result=None) -> None:
    original = getattr(owner, attr)
    if getattr(original, "__bench_probe__", False):
        return
    setattr(owner, attr, _timed(name, original, on_result))


def _skipped_collect(generation=2):
    return 0


def _role() -> str:
    """``search worker``, a pool's worker process (``python -m search.execution.pool``), or
    ``search start``."""
    if "worker" in sys.argv[1:] or sys.argv[0].endswith(os.path.join("execution", "pool.py")):
        return "worker"
    return "start" if "start" in sys.argv[1:] else "other"


def _dump() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    path = os.path.join(os.environ["BENCH_PROBE_DIR"], f"probe-{os.getpid()}.json")
    payload = {
        "pid": os.getpid(),
        "argv": sys.argv,
        "role": _role(),
        "started": STATE["started"],
        "exited": time.time(),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024.0,
        "backend_modules": sorted(m for m in ("tensorflow", "jax", "torch") if m in sys.modules),
        "transient_errors": TRANSIENT,
        "fields": ["name", "start", "seconds", "depth", "trial", "thread"],
        "events": EVENTS,
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)


class _NoTensorFlow:
    """A meta path finder that makes ``import tensorflow`` fail (``BENCH_BLOCK_TENSORFLOW=1``): the
    store benchmark's workers train nothing, and ``keras.utils.set_random_seed`` imports
    TensorFlow whenever it is installed, whatever the backend (about 450 MB and seconds of CPU per
    worker process)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "tensorflow" or fullname.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by the bench probe)")
        return None


def install() -> None:
    if os.environ.get("BENCH_BLOCK_TENSORFLOW") == "1":
        sys.meta_path.insert(0, _NoTensorFlow())
    import optuna

    import search.execution.faults
    import search.execution.runner
    import search.execution.worker
    import search.space.bridge
    import search.space.loader
    import search.storage.records
    import search.storage.retry
    import search.storage.workers

    def remember_trial(trial):
        STATE["trial"] = trial.number

    _patch(optuna.study.Study, "ask", "ask", remember_trial)
    _patch(optuna.study.Study, "tell", "tell")
    _patch(optuna.trial.Trial, "report", "report")
    _patch(optuna.trial.Trial, "should_prune", "should_prune")
    _patch(optuna.trial.Trial, "set_user_attr", "set_user_attr")

    _patch(search.execution.worker, "fail_stale_trials", "reap")
    _patch(search.execution.worker, "run_trial", "run_trial")
    _patch(search.execution.worker, "record", "record")
    _patch(search.execution.faults.Heartbeat, "beat", "beat")
    _patch(search.storage.records.StudyRecords, "claim", "claim")
    _patch(search.storage.records.StudyRecords, "get", "study_record")
    _patch(search.storage.workers.WorkerRegistry, "set_state", "set_state")
    _patch(search.storage.workers.WorkerRegistry, "register", "register")
    _patch(search.space.bridge.TrialHyperParameters, "_value_for", "bridge")
    _patch(search.space.loader.FunctionHyperModel, "build", "build")
    _patch(search.space.loader.FunctionHyperModel, "fit", "fit")
    try:  # best-epoch checkpoints (search.execution.checkpoints), where this version of search has them
        import search.execution.checkpoints

        _patch(search.execution.checkpoints.Checkpoints, "keep_trial", "checkpoint_keep")
        _patch(search.execution.checkpoints.Checkpoints, "settle", "checkpoint_settle")
    except (ImportError, AttributeError):
        pass
    # The worker loop reads its trial back after ask and after tell (ResilientRDBStorage.get_trial).
    from search.storage.resilient import ResilientRDBStorage

    _patch(ResilientRDBStorage, "get_trial", "get_trial")
    _patch(ResilientRDBStorage, "get_all_trials", "get_all_trials")

    import keras

    _patch(keras.utils, "set_random_seed", "set_random_seed")
    if os.environ.get("BENCH_SKIP_GC") == "1":
        # Store-only view (store_scaling --skip-runner-gc): the runner's per-trial garbage
        # collections (the one inside clear_session, and the runner's own where it has one) are
        # skipped.
        clear = keras.backend.clear_session
        keras.backend.clear_session = lambda free_memory=True: clear(free_memory=False)
    runner_gc = getattr(search.execution.runner, "gc", None)  # search before 2026-11-23 collected twice
    if runner_gc is not None:
        collect = _skipped_collect if os.environ.get("BENCH_SKIP_GC") == "1" else runner_gc.collect
        search.execution.runner.gc = types.SimpleNamespace(collect=_timed("gc_collect", collect))
    _patch(keras.backend, "clear_session", "clear_session")

    is_transient = search.storage.retry.is_transient

    def counting(exc):
        result = is_transient(exc)
        if result:
            text = str(exc).strip().splitlines()
            TRANSIENT.append({"time": time.time(), "type": type(exc).__name__,
                              "message": text[0][:200] if text else ""})
        return result

    search.storage.retry.is_transient = counting
    atexit.register(_dump)
