"""The pricing database: one SQLite file holds the usage ledger and the API keys, so a request's
usage row and its key's spending are committed in one transaction.

Amounts are decimal text: wei totals pass SQLite's 2**63 integers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["connect"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    key TEXT,
    function TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    model_id TEXT NOT NULL,
    units INTEGER NOT NULL,
    quoted_wei TEXT NOT NULL,
    wei TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER
);
CREATE INDEX IF NOT EXISTS usage_time ON usage (time);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    hash TEXT NOT NULL UNIQUE,
    credit TEXT,
    spent TEXT NOT NULL DEFAULT '0',
    functions TEXT,
    created REAL NOT NULL,
    revoked REAL
);
"""
# keys.credit: wei granted so far (NULL: no budget, metered only); keys.spent: wei billed, raised
# in the same transaction as each usage row; keys.functions: JSON list of allowed functions.


def connect(path: str | Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open (creating) the database in WAL mode, in autocommit mode: callers ``BEGIN IMMEDIATE``
    for writes. ``synchronous=FULL`` syncs each commit to disk: it survives power loss."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(_SCHEMA)
    return db
