"""A real local Ray cluster for the tests: ``ray start --head --block`` on loopback with a few
CPUs, no GPU and a small object store, in a temporary folder; stopped (its process group with it)
and its files removed at the end. Without Ray (``pip install -e ".[ray]"``) the tests that need
a cluster are skipped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search.testing.postgres import free_port

START_TIMEOUT_S = 90
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's least is 75 MiB


class RayUnavailable(Exception):
    """No Ray cluster can be run here; the message says why."""


class RayCluster:
    """One head node: ``start()``, ``address``, ``destroy()``."""

    def __init__(self, cpus: int = 3):
        ray = shutil.which("ray", path=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
        if ray is None:
            raise RayUnavailable('Ray is not installed: pip install -e ".[ray]"')
        self.ray = ray
        # Ray's socket paths must stay short (AF_UNIX: 107 bytes): a short folder under /tmp.
        self.root = Path(tempfile.mkdtemp(prefix="sray-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None

    def start(self) -> RayCluster:
        log = open(self.root / "head.out", "w")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self.proc = subprocess.Popen(
            [self.ray, "start", "--head", "--block", f"--port={self.port}",
             "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}", "--num-gpus=0",
             f"--object-store-memory={OBJECT_STORE_BYTES}", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={self.root}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = (self.root / "head.out").read_text(errors="replace")[-1500:]
                self.destroy()
                raise RayUnavailable(f"the test Ray cluster did not start: {text}")
            time.sleep(1.0)
        return self

    def _ready(self) -> bool:
        text = (self.root / "head.out").read_text(errors="replace")
        return "Ray runtime started" in text

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # --block: it stops the cluster's processes
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the cluster is left
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
