"""A throwaway PostgreSQL server on loopback, for the storage tests (`tests/dse/conftest.py`)
and `bench_workers`.

Debian's `postgresql` package (`make postgres` installs it) provides initdb and pg_ctl under
/usr/lib/postgresql/<version>/bin. As root they run as an unprivileged user (`postgres`, else
`nobody`), with a data folder in a temp folder that user owns, trust authentication, and a
free loopback port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUPERUSER", "PostgresServer", "initdb_missing", "postgres_server"]

SUPERUSER = "dse"


@dataclass(frozen=True)
class PostgresServer:
    port: int
    version: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _pg_bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_pg_version)
    return Path(versions[-1]).parent if versions else None


def _pg_version(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in Path(path).parts[-3].split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_user(command: list[str]) -> tuple[list[str], str | None]:
    """The command, run as an unprivileged user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command, None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--", *command], user
    raise RuntimeError("running as root, and neither a `postgres` nor a `nobody` user exists")


def _pg_run(command: list[str]) -> str:
    wrapped, _ = _as_user(command)
    done = subprocess.run(wrapped, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port, stopped and removed at the end.

    Raises:
        FileNotFoundError: PostgreSQL's initdb is missing (`make postgres` installs it).
    """
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL's initdb is missing (`make postgres` installs it)")
    root = Path(tempfile.mkdtemp(prefix="robustdice-pg-"))
    try:
        _, user = _as_user([])
        if user is not None:
            shutil.chown(root, user)
        data, sockets, port = root / "data", root / "sockets", _free_port()
        sockets.mkdir()
        if user is not None:
            shutil.chown(sockets, user)
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER]
        _pg_run([*initdb, "-E", "UTF8"])
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c max_connections=200"
        pg_ctl = str(bin_dir / "pg_ctl")
        version = _pg_run([pg_ctl, "--version"]).strip().rsplit(" ", 1)[-1]
        log = str(root / "server.log")
        _pg_run([pg_ctl, "-D", str(data), "-l", log, "-w", "-o", options, "start"])
        try:
            yield PostgresServer(port, version)
        finally:
            _pg_run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)



def initdb_missing() -> bool:
    return _pg_bin_dir() is None
