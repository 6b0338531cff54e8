"""A real PostgreSQL server for the storage tests, started here and stopped at the end
(`benchmarks._postgres`: Debian's initdb/pg_ctl as an unprivileged user, a temp folder, a
free loopback port). Without initdb the tests skip, except in CI (`CI` set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from benchmarks._postgres import PostgresServer, initdb_missing, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port, for the whole test session."""
    if initdb_missing():
        message = "PostgreSQL's initdb is missing (`make postgres` installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the PostgreSQL tests")
        pytest.skip(message)
    with postgres_server() as server:
        yield server


@pytest.fixture()
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres.create_database()
