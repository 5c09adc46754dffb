"""``warmgate db upgrade``: create or migrate the pricing database's schema (``migrations``), and
the one-line refusal of a gateway whose database is unreachable or older than its code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from warmgate.core.http.errors import ConfigError
from warmgate.plugins.pricing.database import StoreUnavailable, is_postgres_url, open_database, where
from warmgate.plugins.pricing.migrations import LATEST, SchemaTooNew, SchemaTooOld, current_version, upgrade

__all__ = ["cli_target", "db_command", "refuse_to_start"]

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="serverless.yaml or aiModels.json (default: $WARMGATE_CONFIG, ./serverless.yaml)")


class StartRefused(SystemExit):
    """Stops ``serve`` during startup with exit status 1, its reason already printed."""


def _refused(error: BaseException | None) -> bool:
    if isinstance(error, StartRefused):
        return True
    return isinstance(error, BaseExceptionGroup) and any(_refused(e) for e in error.exceptions)


class _QuietRefusal(logging.Filter):
    """Drops the server's traceback of a ``StartRefused`` (Litestar hands uvicorn the formatted
    traceback as the startup failure's message): its reason is already on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _refused(record.exc_info[1]):
            return False
        return f"{__name__}.StartRefused" not in str(record.msg)


@contextmanager
def refuse_to_start() -> Iterator[None]:
    """A store that cannot be used stops the gateway with one line on stderr, not a traceback."""
    try:
        yield
    except (StoreUnavailable, SchemaTooOld, SchemaTooNew, ConfigError) as exc:
        print(f"warmgate: {exc}", file=sys.stderr, flush=True)
        logging.getLogger("uvicorn.error").addFilter(_QuietRefusal())
        raise StartRefused(1) from None


def cli_target(config_path: str | None) -> str | Path | None:
    """The configured store's file or URL, for a command (a bad configuration is the ``warmgate``
    group's one-line error)."""
    from warmgate.core.config import load_settings
    from warmgate.plugins.pricing.store import store_target

    return store_target(load_settings(config_path))


@click.group("db")
def db_command() -> None:
    """The pricing database (keys, balances, holds, usage): SQLite file or PostgreSQL."""


@db_command.command("upgrade")
@_config_option
def db_upgrade(config_path: str | None) -> None:
    """Create or migrate the schema to this warmgate's version (safe to run again, and from
    several machines at once)."""
    target = cli_target(config_path)
    if target is None:
        raise click.ClickException("the usage ledger is off (pricing.ledger: off): there is no database")
    name = where(str(target)) if is_postgres_url(target) else str(target)
    try:
        db = open_database(target)
    except StoreUnavailable as exc:
        raise click.ClickException(exc.msg) from None
    try:
        before = current_version(db)
        if before > LATEST:
            raise click.ClickException(str(SchemaTooNew(before, name)))
        applied = upgrade(db)
    finally:
        db.close()
    for number, description in applied:
        click.echo(f"applied {number}: {description}")
    click.echo(f"{name}: schema version {LATEST}" + ("" if applied else " (already current)"))
