"""A real PostgreSQL server for the tests: initdb in a temporary directory, started on a free
loopback port, stopped (and its files removed) at the end of the session.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/<version>/bin``);
``.ci/run`` installs it, and without it the tests that need a server are skipped. The server runs as
the ``postgres`` system user when the tests run as root (initdb refuses root). Connections use a
password (scram-sha-256), as a real deployment does.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DB_USER = "search"
START_TIMEOUT_S = 60


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be run here; the message says why."""


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def find_binaries() -> Path:
    """PostgreSQL's binaries (Debian's ``postgresql`` package, which ``.ci/run`` installs)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL is not installed: apt-get install postgresql "
                                  "(.ci/run installs it)")
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server: ``start()``, ``url(db)``, ``create_database()``, ``restart()``, ``stop()``."""

    def __init__(self, parent: str | None = None):
        """``parent``: the folder to make the server's own folder in (default: the temporary
        folder); as root it must be one the postgres user can reach."""
        self.bin = find_binaries()
        self.root = Path(tempfile.mkdtemp(prefix="search-pg-", dir=parent))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no postgres user") from None
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, check: bool = True, timeout: float = START_TIMEOUT_S):
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                                cwd=self.root)
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(f"{args[0]} failed: {result.stderr.strip()[-500:]} {log}")
        return result

    def start(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", DB_USER, f"--pwfile={pwfile}",
                  "--auth=scram-sha-256", "-E", "UTF8", "--locale=C")
        pwfile.unlink()
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=400")  # the test process keeps pooled engines of many tests
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", str(START_TIMEOUT_S), "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server (its connections are cut), stay down ``down_s``, start it again."""
        self.stop("fast")
        time.sleep(down_s)
        self._pg_ctl_start()

    def url(self, database: str = "postgres", user: str = DB_USER, password: str | None = None) -> str:
        return (f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{database}")

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (autocommit: CREATE DATABASE needs it)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER,
                                password=self.password, dbname=database)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def create_database(self) -> str:
        name = f"t_{secrets.token_hex(4)}"
        self.sql(f"CREATE DATABASE {name}")
        return name

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
