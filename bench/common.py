"""Shared helpers of the benchmarks: paths, running ``search`` in a fresh process (optionally with
the timing probe), machine facts, percentiles, tables and JSON results, a local PostgreSQL server.

Nothing here is imported by ``search``; the benchmarks import nothing of ``search`` at module level
either (the backend is chosen by the environment before Keras is imported).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
PROBE_DIR = BENCH / "probe"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Keep TensorFlow's C++ start-up chatter out of the benchmark output (search/__init__ does the same).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# ---------------------------------------------------------------------------------------------
# processes


def child_env(extra: dict | None = None, probe_dir: str | None = None) -> dict:
    """The environment of a ``search`` process: the repository on PYTHONPATH (so ``python -m
    search`` works from the checkout), the probe folder too when ``probe_dir`` is given."""
    env = dict(os.environ)
    env.pop("SEARCH_STORAGE", None)
    paths = [str(REPO)]
    if probe_dir is not None:
        paths.insert(0, str(PROBE_DIR))
        env["BENCH_PROBE_DIR"] = str(probe_dir)
    else:
        env.pop("BENCH_PROBE_DIR", None)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def cpu_clock():
    """CPU seconds (user+sys) of this process's finished children while the block runs."""
    box = {}
    before = os.times()
    yield box
    after = os.times()
    box["children_cpu_s"] = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)


def run_search(args: list[str], env: dict, timeout: float = 3600, log_path: Path | None = None):
    """``python -m search ARGS`` in the repository; returns (returncode, wall seconds, output)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "search", *args], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    if log_path is not None:
        log_path.write_text(output)
    return proc.returncode, wall, output


def tail(text: str, lines: int = 15) -> str:
    keep = [line for line in text.splitlines() if line.strip() and not line.startswith(("I0000", "W0000", "E0000"))
            and "absl::InitializeLog" not in line]
    return "\n".join(keep[-lines:])


def read_probes(probe_dir: Path, role: str | None = "worker") -> list[dict]:
    """The probe dumps of the processes that ran with ``probe_dir`` (see bench/probe)."""
    found = []
    for path in sorted(Path(probe_dir).glob("probe-*.json")):
        dump = json.loads(path.read_text())
        if role is None or dump.get("role") == role:
            found.append(dump)
    return found


# ---------------------------------------------------------------------------------------------
# numbers


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation, as numpy); None for no values."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    k = (len(values) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:  # (inf - inf) * 0 would be nan
        return values[lo]
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def median(values) -> float | None:
    return percentile(values, 50)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds


def fmt(value, digits: int = 1, unit: str = "") -> str:
    """A figure of a result table: ``search.console.format.fixed``, the service's own formatter."""
    from search.console.format import fixed

    return fixed(value, digits, unit)


def epoch_seconds(value) -> float | None:
    """A datetime from Optuna (naive local time, as Optuna stores it) as seconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


# ---------------------------------------------------------------------------------------------
# machine and results


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """What the figures were measured on (the load average says how busy the machine was)."""
    info = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1_5_15": loadavg(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
    }
    try:
        with open("/proc/meminfo") as f:
            mem = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()}
        info["mem_total_gib"] = round(mem["MemTotal"] / 2**20, 1)
        info["mem_available_gib"] = round(mem["MemAvailable"] / 2**20, 1)
    except (OSError, KeyError, ValueError):
        pass
    from importlib import metadata

    for dist in ("keras", "keras-tuner", "optuna", "tensorflow", "sqlalchemy", "jax"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                            capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        pass
    return info


def write_results(name: str, payload: dict, out: str | None = None) -> Path:
    """Write the benchmark's JSON (``bench/results/NAME.json`` unless ``out`` is given)."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list], note: str | None = None) -> None:
    """A rich table (plain text when rich is missing)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(title)
        print(" | ".join(columns))
        for row in rows:
            print(" | ".join(str(c) for c in row))
        if note:
            print(note)
        return
    table = Table(title=title, title_justify="left", caption=note, caption_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console(width=max(100, min(200, os.get_terminal_size().columns if sys.stdout.isatty() else 160))).print(table)


def say(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@contextlib.contextmanager
def postgres():
    """A PostgreSQL server on loopback for the benchmark (search/testing/postgres.py: initdb as the postgres user,
    fsync off), destroyed at the end. Yields the server (``.url(db)``, ``.create_database()``)."""
    from search.testing.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


def client_connections(server, database: str) -> int:
    """The PostgreSQL server's client connections to ``database`` now (``pg_stat_activity``)."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=server.port, user="search", password=server.password,
                            dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                        "AND datname = %s", (database,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def p50_p99(calls: dict, name: str) -> str:
    """``"p50 / p99"`` milliseconds of one call in a benchmark's ``calls`` summary ("-": none)."""
    if name not in calls:
        return "-"
    return f"{fmt(calls[name]['p50_ms'])} / {fmt(calls[name]['p99_ms'])}"
