"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd on loopback, with a
generated ``slurm.conf`` in a temporary directory, stopped (and its files removed) at the end.

Debian's ``slurm-wlm`` and ``munge`` packages provide the daemons; ``.ci/run`` installs them, and
without them (or without root, which slurmd needs to start job steps as their user) the tests that
need a cluster are skipped. The client commands (``sbatch``, ``squeue``, ``scancel``) find the
cluster through ``SLURM_CONF``, which :meth:`SlurmCluster.env` sets.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from search.testing.postgres import free_port

START_TIMEOUT_S = 60
DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailable(Exception):
    """No Slurm cluster can be run here; the message says why."""


def _conf(root: Path, host: str, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=searchtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """One cluster: ``start()``, ``env()``, ``run(cmd...)``, ``destroy()``."""

    def __init__(self, cpus: int = 4):
        missing = [d for d in (*DAEMONS, "sbatch") if shutil.which(d) is None
                   and not os.path.exists(f"/usr/sbin/{d}")]
        if missing:
            raise SlurmUnavailable(f"Slurm is not installed ({', '.join(missing)} missing): "
                                   "apt-get install slurm-wlm munge (.ci/run installs them)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("a test Slurm cluster needs root (slurmd starts job steps)")
        self.root = Path(tempfile.mkdtemp(prefix="search-slurm-"))
        os.chmod(self.root, 0o755)  # munged refuses a socket folder others may write
        self.host = socket.gethostname()
        self.conf = self.root / "slurm.conf"
        self.conf.write_text(_conf(self.root, self.host, cpus, free_port(), free_port()))
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        self.procs: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and result.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {result.stderr.strip()[-500:]}")
        return result

    def _daemon(self, *cmd: str) -> None:
        log = open(self.root / f"{Path(cmd[0]).name}.out", "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()

    def _logs(self) -> str:
        return " | ".join(f"{p.name}: {p.read_text(errors='replace')[-600:]}"
                          for p in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")))

    def start(self) -> SlurmCluster:
        key = self.root / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        self._daemon("munged", "--foreground", "--force", f"--socket={self.root}/munge.socket",
                     f"--key-file={key}", f"--log-file={self.root}/munged.log",
                     f"--pid-file={self.root}/munged.pid", f"--seed-file={self.root}/munged.seed")
        self._wait(lambda: (self.root / "munge.socket").exists(), "munged")
        self._daemon("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._daemon("slurmd", "-D", "-f", str(self.conf))
        self._wait(self._node_idle, "the node to come up")
        return self

    def _node_idle(self) -> bool:
        result = self.run("sinfo", "--noheader", "-o", "%t", check=False)
        return result.returncode == 0 and result.stdout.strip().rstrip("*") in ("idle", "mix", "alloc")

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.destroy()
                raise SlurmUnavailable(f"the test Slurm cluster did not start ({what}): {self._logs()}")
            time.sleep(0.3)

    def jobs(self) -> list[str]:
        """Job ids (``1234_0`` for array tasks) of the jobs pending or running."""
        out = self.run("squeue", "--noheader", "-o", "%i").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def destroy(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)
