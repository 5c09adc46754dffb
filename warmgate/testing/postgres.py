"""A real PostgreSQL server for tests: ``initdb`` into a temporary directory, ``pg_ctl start`` on
a free port on 127.0.0.1, stopped after. Add ``pytest_plugins = ["warmgate.testing.postgres"]``
to a ``conftest.py`` for the ``postgres_server`` (session) and ``postgres_url`` (a fresh
database per test) fixtures, and ``pricing_database``: a test runs once per pricing store
(SQLite file, PostgreSQL database). They skip when PostgreSQL's binaries are not installed.

PostgreSQL refuses to run as root, so when the tests do (CI containers), the server runs as
``nobody`` with its data directory handed to it.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from warmgate.plugins.pricing.database import open_database
from warmgate.testing.process import free_port

__all__ = ["PostgresServer", "PricingDatabase", "pg_bin", "postgres_server", "postgres_url", "pricing_database"]

_SERVER_USER = "nobody"


def pg_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


class PostgresServer:
    """One PostgreSQL cluster; ``url(db)`` addresses a database in it as superuser ``postgres``
    (trust authentication on 127.0.0.1 only)."""

    def __init__(self, root: Path | None = None, *, port: int | None = None, fsync: bool = False) -> None:
        binaries = pg_bin()
        if binaries is None:
            raise FileNotFoundError("PostgreSQL is not installed (no initdb): apt-get install postgresql")
        self.bin = binaries
        self.root = Path(root or tempfile.mkdtemp(prefix="warmgate-pg-"))  # under /tmp: `nobody` can reach it
        self.data = self.root / "data"
        self.port = port or free_port()
        self.fsync = fsync
        self._user = _SERVER_USER if os.geteuid() == 0 else None
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], user=self._user, env=env, cwd=self.root,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def init(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
                   f" -c fsync={'on' if self.fsync else 'off'}")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (skipped when it is not installed)."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb)")
    server = PostgresServer().init()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        finally:
            server.remove()


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()


class PricingDatabase:
    """One pricing store for a test: ``kind`` ``sqlite`` or ``postgresql``, ``target`` the file
    or URL, ``pricing()`` the ``pricing:`` settings that select it, ``rows()`` raw SQL on it."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind
        self.target = target

    def pricing(self, **fields: Any) -> dict[str, Any]:
        return {"database" if self.kind == "postgresql" else "ledger": self.target, **fields}

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """``sql`` with ``?`` placeholders, on a connection of its own."""
        db = open_database(self.target)
        try:
            return [tuple(row) for row in db.execute(sql, args).fetchall()]
        finally:
            db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def pricing_database(request: pytest.FixtureRequest, tmp_path: Path) -> PricingDatabase:
    """Runs the test once per store: a SQLite file in ``tmp_path``, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return PricingDatabase("sqlite", str(tmp_path / "usage.sqlite"))
    return PricingDatabase("postgresql", request.getfixturevalue("postgres_url"))
