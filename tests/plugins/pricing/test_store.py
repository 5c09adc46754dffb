"""The pricing database's schema and faults: `warmgate db upgrade` migrates an older schema
(a SQLite file from before versioning keeps its keys and usage), `serve` refuses a schema that
is too old and a database it cannot reach with one line naming the fix, never a traceback."""

import json
import sqlite3
import subprocess
import sys

import pytest

from warmgate.plugins.pricing.database import open_database
from warmgate.plugins.pricing.keys import KeyStore
from warmgate.plugins.pricing.migrations import LATEST, MIGRATIONS, current_version, upgrade
from warmgate.testing.process import free_port


def warmgate(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "warmgate", *args], capture_output=True, text=True, timeout=timeout)


def write_config(tmp_path, pricing):
    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"auth": {"keys": True}, "pricing": pricing, "functions": []}))
    return config


def refused(config):
    """``serve``'s exit status (uvicorn's 3 when startup fails) and stderr when it stops before listening."""
    result = warmgate("serve", "--config", str(config), "--port", str(free_port()))
    return result.returncode, result.stderr


def make_old_schema(pricing_database):
    """The database at version 1: a SQLite file as warmgate wrote it before versioning, or a
    PostgreSQL database migrated to 1 only."""
    if pricing_database.kind == "sqlite":
        db = sqlite3.connect(pricing_database.target)
        db.executescript(MIGRATIONS["sqlite"][0][2])
        db.execute("INSERT INTO keys (id, name, hash, credit, spent, created) VALUES ('key_old', 'old', 'h', '90', "
                   "'10', 0)")
        db.execute("INSERT INTO usage (request_id, time, key, function, pipeline, model_id, units, quoted_wei, wei, "
                   "status, duration_ms) VALUES ('r1', 1, 'key_old', 'echo:e', 'echo', 'e', 10, '10', '10', 200, 1)")
        db.commit()
        db.close()
        return
    db = open_database(pricing_database.target)
    upgrade(db, target=1)
    db.execute("INSERT INTO keys (id, name, hash, credit, spent, created) VALUES ('key_old', 'old', 'h', 90, 10, 0)")
    db.close()


def test_serve_refuses_a_schema_that_is_too_old_and_db_upgrade_migrates_it(pricing_database, tmp_path):
    make_old_schema(pricing_database)
    config = write_config(tmp_path, pricing_database.pricing())
    status, stderr = refused(config)
    assert status != 0 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if "schema version 1" in line]
    assert f"this warmgate needs {LATEST}: run `warmgate db upgrade`" in line
    assert "no such column" not in warmgate("keys", "list", "--config", str(config)).stderr  # refused, not broken
    assert "warmgate db upgrade" in warmgate("keys", "list", "--config", str(config)).stderr

    upgraded = warmgate("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"applied {LATEST}:" in upgraded.stdout and f"schema version {LATEST}" in upgraded.stdout
    again = warmgate("db", "upgrade", "--config", str(config))
    assert again.returncode == 0 and "already current" in again.stdout

    store = KeyStore(pricing_database.target)  # the old key is still there, and so is its balance
    try:
        assert store.get("key_old").balance == 80
    finally:
        store.close()
    db = open_database(pricing_database.target)
    try:
        assert current_version(db) == LATEST
    finally:
        db.close()


def test_an_empty_database_gets_the_schema_on_first_use(pricing_database):
    store = KeyStore(pricing_database.target)
    try:
        assert store.list() == []
    finally:
        store.close()
    assert pricing_database.rows("SELECT MAX(version) FROM schema_version") == [(LATEST,)]


def test_a_database_that_is_not_there_stops_serve_with_its_host(tmp_path):
    port = free_port()  # nothing listens there
    config = write_config(tmp_path, {"database": f"postgresql://warmgate:secret@127.0.0.1:{port}/ledger"})
    status, stderr = refused(config)
    assert status != 0 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if "pricing database" in line]
    assert f"127.0.0.1:{port}/ledger is unreachable" in line and "secret" not in line
    keys = warmgate("keys", "list", "--config", str(config))
    assert keys.returncode == 1 and f"127.0.0.1:{port}/ledger is unreachable" in keys.stderr
    assert "Traceback" not in keys.stderr


@pytest.mark.parametrize("url", ["mysql://root@db/ledger", "ledger.sqlite"])
def test_a_database_that_is_not_a_postgresql_url_is_refused_by_name(tmp_path, url):
    config = write_config(tmp_path, {"database": url})
    status, stderr = refused(config)
    assert status != 0 and "Traceback" not in stderr
    assert "pricing.database: expected postgresql://user:password@host:5432/database" in stderr
    upgraded = warmgate("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 1 and "pricing.database: expected postgresql://" in upgraded.stderr


def test_the_database_url_comes_from_the_environment(postgres_url):
    from warmgate.core.config import load_settings
    from warmgate.plugins.pricing.store import store_target

    assert store_target(load_settings(None, env={"WARMGATE_DATABASE_URL": postgres_url})) == postgres_url
