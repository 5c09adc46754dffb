"""The pricing database: keys, balances and the usage ledger in one database, so a request's
usage row and its key's spending are committed in one transaction. SQLite (a file, the default)
or PostgreSQL (``pricing.database: postgresql://...``, for several gateway replicas).

``Database`` is one connection to either, with ``?`` placeholders and ``transaction()``, so the
key and ledger queries are written once. psycopg is imported only for a PostgreSQL URL.
Amounts are decimal text in SQLite (wei totals pass its 2**63 integers), ``NUMERIC(78,0)`` in
PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from warmgate.core.http.errors import CapacityError

__all__ = ["Database", "StoreUnavailable", "connect", "is_postgres_url", "open_database", "where"]

Dialect = Literal["sqlite", "postgresql"]


class StoreUnavailable(CapacityError):
    """The pricing database cannot be reached: 503 with Retry-After for a request that needs it."""


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def where(url: str) -> str:
    """``host:port/db`` of a PostgreSQL URL, for messages (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


def unreachable(url: str, exc: Exception) -> StoreUnavailable:
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return StoreUnavailable(f"the pricing database at {where(url)} is unreachable: {reason}")


def connect(path: str | Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open (creating) the SQLite file in WAL mode, in autocommit mode: callers ``BEGIN IMMEDIATE``
    for writes. ``synchronous=FULL`` syncs each commit to disk: it survives power loss."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db


class Database:
    """One connection, SQLite or PostgreSQL (psycopg, autocommit), written to with ``?``."""

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect

    def execute(self, sql: str, args: Sequence[object] = ()) -> Any:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        return self.connection.execute(sql, args)

    def script(self, sql: str | Sequence[str]) -> None:
        """Statements separated by ``;`` (or a sequence of statements, for bodies that contain
        ``;``), one by one: sqlite3's ``executescript`` would commit the transaction it runs in."""
        for statement in sql.split(";") if isinstance(sql, str) else sql:
            if statement.strip():
                self.connection.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: SQLite's ``BEGIN IMMEDIATE`` (writers queue for the file's lock),
        a PostgreSQL transaction (rows lock as they are written)."""
        if self.dialect == "postgresql":
            with self.connection.transaction():
                yield
            return
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()


def open_database(target: str | Path, *, synchronous: str = "FULL") -> Database:
    """A connection to the SQLite file or PostgreSQL URL ``target``; ``StoreUnavailable`` naming
    the host when PostgreSQL cannot be reached."""
    if not is_postgres_url(target):
        return Database(connect(target, synchronous=synchronous), "sqlite")
    import psycopg

    url = str(target)
    try:
        return Database(psycopg.connect(url, autocommit=True, connect_timeout=5), "postgresql")
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
