"""The pricing database's schema, as numbered migrations: ``warmgate db upgrade`` applies the
ones a database lacks, each in one transaction with its row in ``schema_version``; a gateway
creates the schema of an empty database itself and refuses to start on an older one.

A migration is only ever appended, never edited: version N means the same tables everywhere.
SQLite files made before versioning (a ``usage`` or ``keys`` table, no ``schema_version``) are
version 1.

1. ``usage`` (one row per priced request) and ``keys`` (hashed secrets, credit and spent).
2. ``usage (key, time)`` index for a key's totals. PostgreSQL also gets the holds shared by
   replicas: ``keys.held``, ``holds`` (one row per request in progress, with its owner) and
   ``owners`` (each gateway process and the lease it renews), ``usage.hold`` (the hold each row
   settled, unique). SQLite keeps holds in memory.
3. Per-key rate limits: ``keys.rpm``, ``keys.tpm``, ``keys.max_parallel`` (NULL: no limit) and
   ``rate_events`` (one row per admitted request of a limited key in the last window, with its
   tokens once it ended, and the process that runs it). PostgreSQL also gets the function
   ``warmgate_admit``, which counts and admits in one round trip, and ``warmgate_end`` (both
   commit without waiting for the disk: see ``pricing/rate_limits.py``).
   SQLite also gets ``holds``, for the gateway processes of ``serve --workers`` sharing the file.
4. The ledger off the critical path: a hold is written while its function runs and settled after
   the answer, so a hold row carries what recovery needs to bill it (``request_id``, ``pipeline``,
   ``model_id``, ``units``, ``function``) and ``answering``, the time its answer started (NULL:
   not yet). A dangling hold with ``answering`` set is billed at its quote, one without is released
   (see ``pricing/holds.py``). Holds of operator keys (no budget) are rows too: ``key`` may be NULL.
   PostgreSQL also gets ``warmgate_answering``, which marks a hold without waiting for the disk.
"""

from __future__ import annotations

import time
from pathlib import Path

from warmgate.plugins.pricing.database import Database, Dialect, is_postgres_url, open_database, where

__all__ = ["LATEST", "SchemaTooNew", "SchemaTooOld", "check", "current_version", "open_current", "upgrade"]

_SQLITE_1 = """
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

_POSTGRES_1 = """
CREATE TABLE usage (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    key TEXT,
    function TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    model_id TEXT NOT NULL,
    units BIGINT NOT NULL,
    quoted_wei NUMERIC(78, 0) NOT NULL,
    wei NUMERIC(78, 0) NOT NULL,
    status INTEGER NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER
);
CREATE INDEX usage_time ON usage (time);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    hash TEXT NOT NULL UNIQUE,
    credit NUMERIC(78, 0),
    spent NUMERIC(78, 0) NOT NULL DEFAULT 0,
    functions TEXT,
    created DOUBLE PRECISION NOT NULL,
    revoked DOUBLE PRECISION
);
"""

_POSTGRES_2 = """
CREATE INDEX usage_key_time ON usage (key, time);
ALTER TABLE keys ADD COLUMN held NUMERIC(78, 0) NOT NULL DEFAULT 0 CHECK (held >= 0);
CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL REFERENCES keys (id),
    wei NUMERIC(78, 0) NOT NULL,
    owner TEXT NOT NULL,
    function TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE INDEX holds_owner ON holds (owner);
ALTER TABLE usage ADD COLUMN hold TEXT UNIQUE;
"""
# keys.held: the sum of the key's holds, raised by a conditional UPDATE (credit - spent - held >=
# quote), so two replicas can never both take the last affordable quote. usage.hold: the hold a
# row settled, unique, so a settle retried after a lost reply is not billed twice. owners.lease_until is
# the database's clock: replicas' clocks need not agree.

_KEY_LIMITS = """
ALTER TABLE keys ADD COLUMN rpm INTEGER;
ALTER TABLE keys ADD COLUMN tpm BIGINT;
ALTER TABLE keys ADD COLUMN max_parallel INTEGER;
"""

_SQLITE_3 = _KEY_LIMITS + """
CREATE TABLE rate_events (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    time REAL NOT NULL,
    ended REAL,
    tokens INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 1,
    owner TEXT NOT NULL
);
CREATE INDEX rate_events_key_time ON rate_events (key, time);
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    wei TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX holds_key ON holds (key);
"""
# SQLite holds: used when several gateway processes share the file (``serve --workers``); one
# process keeps its holds in memory.

_POSTGRES_3 = (*(s for s in _KEY_LIMITS.split(";") if s.strip()), """
CREATE TABLE rate_events (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    ended DOUBLE PRECISION,
    tokens BIGINT NOT NULL DEFAULT 0,
    running BOOLEAN NOT NULL DEFAULT TRUE,
    owner TEXT NOT NULL
)""", "CREATE INDEX rate_events_key_time ON rate_events (key, time)", """
CREATE FUNCTION warmgate_admit(p_key TEXT, p_id TEXT, p_owner TEXT, p_window DOUBLE PRECISION,
                               p_rpm INTEGER, p_tpm BIGINT, p_parallel INTEGER)
RETURNS TABLE (admitted BOOLEAN, requests BIGINT, tokens BIGINT, running BIGINT, first_request DOUBLE PRECISION,
               last_request DOUBLE PRECISION, first_tokens DOUBLE PRECISION, last_tokens DOUBLE PRECISION,
               now DOUBLE PRECISION)
LANGUAGE plpgsql AS $$
DECLARE
    t DOUBLE PRECISION := extract(epoch FROM clock_timestamp());
    since DOUBLE PRECISION := t - p_window;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);  -- rate state need not survive a crash: no fsync wait
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 2020));  -- one admission per key at a time
    DELETE FROM rate_events e WHERE e.key = p_key AND e.time < since AND NOT e.running
                                    AND COALESCE(e.ended, 0) < since;
    SELECT COUNT(*) FILTER (WHERE e.time >= since),
           COALESCE(SUM(e.tokens) FILTER (WHERE e.ended >= since), 0),
           COUNT(*) FILTER (WHERE e.running AND e.owner IN (SELECT o.id FROM owners o WHERE o.lease_until >= now())),
           MIN(e.time) FILTER (WHERE e.time >= since), MAX(e.time) FILTER (WHERE e.time >= since),
           MIN(e.ended) FILTER (WHERE e.ended >= since AND e.tokens > 0),
           MAX(e.ended) FILTER (WHERE e.ended >= since AND e.tokens > 0)
      INTO requests, tokens, running, first_request, last_request, first_tokens, last_tokens
      FROM rate_events e WHERE e.key = p_key;
    now := t;
    admitted := (p_rpm IS NULL OR requests < p_rpm) AND (p_tpm IS NULL OR tokens < p_tpm)
                AND (p_parallel IS NULL OR running < p_parallel);
    IF admitted THEN
        INSERT INTO rate_events (id, key, time, owner) VALUES (p_id, p_key, t, p_owner);
    END IF;
    RETURN NEXT;
END $$""", """
CREATE FUNCTION warmgate_end(p_id TEXT, p_tokens BIGINT) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE rate_events SET running = FALSE, tokens = p_tokens, ended = extract(epoch FROM clock_timestamp())
     WHERE id = p_id;
END $$""")
# rate_events: a request counts against rpm while its admission is in the window, its tokens
# against tpm while its end is, and against max_parallel while it runs in a live process.

_SQLITE_4 = """
DROP TABLE holds;
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    key TEXT,
    wei TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    function TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    model_id TEXT NOT NULL,
    units INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    answering REAL
);
CREATE INDEX holds_key ON holds (key);
"""
# Rebuilt rather than altered (SQLite cannot drop a NOT NULL): a migration runs with no gateway
# serving (``serve`` refuses the older schema), and a hold a gateway of version 3 left behind had
# no answer out (its answers waited for their settle), so dropping it releases it, as its rule
# did. PostgreSQL keeps such holds unmarked: they are released too.

_POSTGRES_4 = ("ALTER TABLE holds ALTER COLUMN key DROP NOT NULL",
               "ALTER TABLE holds ADD COLUMN pipeline TEXT NOT NULL DEFAULT ''",
               "ALTER TABLE holds ADD COLUMN model_id TEXT NOT NULL DEFAULT ''",
               "ALTER TABLE holds ADD COLUMN units BIGINT NOT NULL DEFAULT 0",
               "ALTER TABLE holds ADD COLUMN request_id TEXT NOT NULL DEFAULT ''",
               "ALTER TABLE holds ADD COLUMN answering DOUBLE PRECISION", """
CREATE FUNCTION warmgate_answering(p_hold TEXT, p_time DOUBLE PRECISION) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);  -- safe against a gateway's crash at once
    UPDATE holds SET answering = p_time WHERE id = p_hold;
END $$""")
# warmgate_answering commits without waiting for PostgreSQL's WAL flush: a gateway killed after
# it returned cannot undo it (the database has it); only a crash of the database server within
# its WAL writer's delay could, and then the hold is released, never billed twice.

MIGRATIONS: dict[Dialect, list[tuple[int, str, str | tuple[str, ...]]]] = {
    "sqlite": [
        (1, "usage and keys", _SQLITE_1),
        (2, "usage (key, time) index", "CREATE INDEX IF NOT EXISTS usage_key_time ON usage (key, time);"),
        (3, "per-key rate limits", _SQLITE_3),
        (4, "holds written while the function runs, settled after the answer", _SQLITE_4),
    ],
    "postgresql": [
        (1, "usage and keys", _POSTGRES_1),
        (2, "usage (key, time) index; holds and owners shared by replicas", _POSTGRES_2),
        (3, "per-key rate limits", _POSTGRES_3),
        (4, "holds written while the function runs, settled after the answer", _POSTGRES_4),
    ],
}
LATEST = 4

_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                  "applied DOUBLE PRECISION NOT NULL)")
UPGRADE_COMMAND = "warmgate db upgrade"


class SchemaTooOld(Exception):
    def __init__(self, version: int, where: str) -> None:
        super().__init__(f"the pricing database at {where} has schema version {version}, this warmgate needs "
                         f"{LATEST}: run `{UPGRADE_COMMAND}` (with the same --config) to migrate it")
        self.version = version


class SchemaTooNew(Exception):
    def __init__(self, version: int, where: str) -> None:
        super().__init__(f"the pricing database at {where} has schema version {version}, newer than this "
                         f"warmgate's {LATEST}: upgrade warmgate")
        self.version = version


def current_version(db: Database) -> int:
    """0 for an empty database; 1 for a SQLite file from before versioning."""
    if _has_table(db, "schema_version"):
        (version,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(version)
    return 1 if _has_table(db, "usage") or _has_table(db, "keys") else 0


def upgrade(db: Database, target: int = LATEST) -> list[tuple[int, str]]:
    """Apply the migrations the database lacks, up to ``target``; the ones applied. Safe to run
    from several processes at once: they queue for a lock and the later ones find nothing to do."""
    applied: list[tuple[int, str]] = []
    with db.transaction():
        if db.dialect == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(2020)")  # one migrator at a time
        version = current_version(db)
        db.execute(_VERSION_TABLE)
        for number, description, sql in MIGRATIONS[db.dialect]:
            if version < number <= target:
                db.script(sql)
                db.execute("INSERT INTO schema_version (version, description, applied) VALUES (?, ?, ?)",
                           (number, description, time.time()))
                applied.append((number, description))
            elif number <= version and not _recorded(db, number):  # a pre-versioning SQLite file
                db.execute("INSERT INTO schema_version (version, description, applied) VALUES (?, ?, ?)",
                           (number, description, time.time()))
    return applied


def check(db: Database, where: str) -> None:
    """Make the schema of an empty database; refuse one that is older or newer than this code's."""
    version = current_version(db)
    if version == 0:
        upgrade(db)
    elif version < LATEST:
        raise SchemaTooOld(version, where)
    elif version > LATEST:
        raise SchemaTooNew(version, where)


def _recorded(db: Database, number: int) -> bool:
    return db.execute("SELECT 1 FROM schema_version WHERE version = ?", (number,)).fetchone() is not None


def _has_table(db: Database, name: str) -> bool:
    if db.dialect == "sqlite":
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        query = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
    return db.execute(query, (name,)).fetchone() is not None


def open_current(target: str | Path, *, synchronous: str = "FULL") -> Database:
    """A connection to the database at ``target`` whose schema is this code's (made if empty);
    ``SchemaTooOld`` / ``SchemaTooNew`` / ``StoreUnavailable`` otherwise."""
    db = open_database(target, synchronous=synchronous)
    try:
        check(db, where(str(target)) if is_postgres_url(target) else str(target))
    except BaseException:
        db.close()
        raise
    return db
