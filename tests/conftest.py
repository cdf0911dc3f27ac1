"""Shared fixtures. Helpers live in ``tests/helpers.py`` (in process) and ``tests/procs.py``."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest
import structlog

from tests.support.pg_server import PostgresServer, admin, running_server


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``configure_logging`` is global: undo it so one test's stream never leaks into the next."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session, started on first use (~1-2 s), stopped
    at the end. No server on this machine: the tests that need it FAIL, saying how to get one."""
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The DSN of the session's server (its ``postgres`` database): share it, do not fill it."""
    return postgres_server.dsn()


_databases = itertools.count(1)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[str]:
    """A DSN of a fresh, empty database of its own for one test, dropped after it."""
    name = f"test_{next(_databases)}"
    admin(postgres_server.dsn(), f"CREATE DATABASE {name} TEMPLATE template0")
    yield postgres_server.dsn(name)
    admin(postgres_server.dsn(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
