"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on a free
port, in a temporary directory, from Debian's postgresql binaries.

Replay tests stop the cluster before replaying, to prove that replay contacts
no database. initdb refuses to run as root, so as root the cluster belongs to
the `postgres` system user (the directory is handed over to it).

Set RETRACE_TEST_PG_BIN to use binaries from elsewhere.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bindir():
    configured = os.environ.get("RETRACE_TEST_PG_BIN")
    if configured:
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: install Debian's "
                           "postgresql package, or set RETRACE_TEST_PG_BIN")
    return Path(found[-1]).parent


def _server_env():
    """The environment of the server tools: without the sanitizer runtime that
    the ASan run preloads (PostgreSQL is not ours, and hangs under it)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One PostgreSQL server. `dsn` connects over TCP to database `test` as
    user `postgres` with trust authentication."""

    def __init__(self):
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="retrace-pg-"))
        self.datadir = self.root / "data"
        self.port = _free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=test user=postgres"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/test"
        self._owner = None
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "test")

    def _run(self, tool, *args):
        cmd = [str(self.bindir / tool), *args]
        if self._owner is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120, env=_server_env())
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def start(self):
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 "
                  f"-c unix_socket_directories={self.root} -c fsync=off", "start")

    def stop(self):
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def running(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def log(self):
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self):
        if self.running():
            try:
                self.stop()
            except RuntimeError:
                pass
        deadline = time.monotonic() + 10
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
