"""A real PostgreSQL server for the storage tests, started here and stopped at the end.

Debian's `postgresql` package (`make postgres` installs it) provides initdb and pg_ctl under
/usr/lib/postgresql/<version>/bin. As root they run as an unprivileged user (`postgres`, else
`nobody`), with a data folder in a temp folder that user owns, trust authentication, and a
free loopback port. Without initdb the tests skip, except in CI (`CI` set), where they fail.
"""

from __future__ import annotations

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

import pytest

SUPERUSER = "dse"


@dataclass(frozen=True)
class PostgresServer:
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> tuple[int, ...]:
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


def _run(command: list[str]) -> None:
    wrapped, _ = _as_user(command)
    done = subprocess.run(wrapped, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port, for the whole test session."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "PostgreSQL's initdb is missing (`make postgres` installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the PostgreSQL tests")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="robustdice-pg-"))
    _, user = _as_user([])
    if user is not None:
        shutil.chown(root, user)
    data, sockets, port = root / "data", root / "sockets", _free_port()
    sockets.mkdir()
    if user is not None:
        shutil.chown(sockets, user)
    _run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8"])
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c max_connections=200"
    pg_ctl = str(bin_dir / "pg_ctl")
    _run([pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-o", options, "start"])
    try:
        yield PostgresServer(port)
    finally:
        _run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres.create_database()
