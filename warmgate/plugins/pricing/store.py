"""The pricing store: what the gateway asks of the database that keeps keys, balances, holds and
the usage ledger, whichever database it is.

``SqliteStore`` (the default, one gateway process): holds in memory, the ledger group-committed
by a writer thread (``serve --workers``: holds in the file). ``PostgresStore`` (``pricing.database: postgresql://...`` or
``$WARMGATE_DATABASE_URL``, several replicas): holds in the database, leased by their owner.
A method returns its result, or an awaitable of it: the SQLite store answers most calls without
waiting, and the core awaits what the hooks return (a hold's beside the function: ``holds.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

import structlog

from warmgate.core.http.auth import Caller
from warmgate.core.http.errors import ConfigError, PaymentRequired
from warmgate.core.usage import Quote, UsageEvent
from warmgate.plugins.pricing.accounts import Accounts, Balance
from warmgate.plugins.pricing.database import is_postgres_url
from warmgate.plugins.pricing.holds import hold_row
from warmgate.plugins.pricing.keys import KeyStore
from warmgate.plugins.pricing.ledger import SqliteLedger, UsageTotal
from warmgate.plugins.pricing.owners import new_owner
from warmgate.plugins.pricing.rate_limits import KeyAdmission, SqliteRateLimits
from warmgate.plugins.pricing.settings import pricing_settings
from warmgate.plugins.pricing.sqlite_holds import SqliteHolds

__all__ = ["SqliteStore", "Store", "open_store", "store_target"]

_log = structlog.get_logger("warmgate.pricing")


class Store(Protocol):
    def authenticate(self, token: str) -> Caller | None | Awaitable[Caller | None]:
        """The key's caller; ``None`` for a token that is not a key; 401 for a revoked key."""

    def reserve(self, quote: Quote) -> None | Awaitable[None]:
        """Hold the quote against its key's balance, or 402 (503 when the store is down); an
        awaitable runs while the function does (``holds.py``)."""

    def answering(self, quote: Quote) -> None | Awaitable[None]:
        """Mark the quote's hold: its answer is about to go out (a crash now bills it)."""

    def settle(self, event: UsageEvent) -> None:
        """Release the event's hold, commit its usage row and spend what it was billed, in one
        transaction, after the answer: queued, nobody waits."""

    def admit(self, key_id: str) -> KeyAdmission | None | Awaitable[KeyAdmission]:
        """Admit a request of the key against its rate limits (``None``: it has none), or
        ``RateLimited`` (429); see ``pricing/rate_limits.py``."""

    def balance(self, key_id: str) -> Balance | None | Awaitable[Balance | None]: ...

    async def totals(self, *, key: str | None = None, since: float | None = None) -> list[UsageTotal]:
        """Totals with every settle this process queued before the call."""

    async def close(self) -> None: ...


def store_target(settings: Any) -> str | Path | None:
    """The PostgreSQL URL, or the SQLite file, or ``None`` when the ledger is off."""
    pricing = pricing_settings(settings)
    if pricing.ledger.lower() == "off":
        return None
    if pricing.database:
        if not is_postgres_url(pricing.database):
            raise ConfigError(settings.source, "pricing.database",
                              f"expected postgresql://user:password@host:5432/database, got {pricing.database!r}")
        return pricing.database
    if pricing.ledger:
        return Path(pricing.ledger).expanduser()
    return settings.gateway.cache_path / "usage.sqlite"


class SqliteStore:
    """Gateway processes on a SQLite file, its writes group-committed (``SqliteLedger``). One
    process: holds are a subtraction in memory (``Accounts``), and a hold's row is first written
    with its answering mark (unmarked, recovery would only release it: the same as no row).
    Several (``shared``: ``serve --workers``): holds are rows in the file that decide, taken
    under its write lock while the function runs (``SqliteHolds``). Opening the store settles
    the holds of processes gone."""

    def __init__(self, path: Path, *, keys: bool, sync: str, shared: bool = False) -> None:
        self.owner = new_owner()
        self.ledger = SqliteLedger(path, sync=sync)
        self.recovered = self.ledger.recover(self.owner)
        """(billed, released): the dangling holds of gateways that died before this one started."""
        if any(self.recovered):
            _log.warning("dangling_holds_settled", billed=self.recovered[0], released=self.recovered[1])
        self.accounts = Accounts(KeyStore(path)) if keys else None
        self.rate_limits = SqliteRateLimits(path) if keys else None
        self.holds = SqliteHolds(path, self.owner) if keys and shared else None

    def authenticate(self, token: str) -> Caller | None:
        return self.accounts.authenticate(token) if self.accounts is not None else None

    def reserve(self, quote: Quote) -> Awaitable[None] | None:
        if self.holds is not None and quote.key is not None:
            return self._shared_reserve(quote, self.holds)
        if self.accounts is not None:
            self.accounts.reserve(quote)  # decided in memory: the row is written with its mark
        return None

    async def _shared_reserve(self, quote: Quote, holds: SqliteHolds) -> None:
        try:
            await holds.reserve(quote)
        except PaymentRequired:  # this process's settles may still be queued, holding what it needs
            await self.ledger.flush()
            await holds.reserve(quote)

    def answering(self, quote: Quote) -> Awaitable[None]:
        if self.holds is not None and quote.key is not None:
            return self.ledger.answering(quote.hold)  # its row was written when it was taken
        return self.ledger.answering(quote.hold, hold_row(quote, self.owner))

    def settle(self, event: UsageEvent) -> None:
        if self.holds is None and self.accounts is not None:
            self.accounts.settle(event)
        self.ledger.settle(event)

    def admit(self, key_id: str) -> Awaitable[KeyAdmission] | None:
        record = self.accounts.record(key_id) if self.accounts is not None else None
        if record is None or not record.limited or self.rate_limits is None:
            return None
        return self.rate_limits.admit(record)

    def balance(self, key_id: str) -> Balance | None | Awaitable[Balance | None]:
        if self.holds is not None:
            return self._shared_balance(key_id)
        return self.accounts.balance(key_id) if self.accounts is not None else None

    async def _shared_balance(self, key_id: str) -> Balance | None:
        assert self.holds is not None
        await self.ledger.flush()  # this process's settles in the file first
        return await self.holds.balance(key_id)

    async def totals(self, *, key: str | None = None, since: float | None = None) -> list[UsageTotal]:
        await self.ledger.flush()
        return await asyncio.to_thread(self.ledger.totals, key=key, since=since)

    async def close(self) -> None:
        if self.accounts is not None:
            self.accounts.close()
        if self.rate_limits is not None:
            self.rate_limits.close()
        if self.holds is not None:
            self.holds.close()
        self.ledger.close()


async def open_store(settings: Any) -> Store | None:
    """The configured store, its schema checked (``SchemaTooOld``...), or ``None`` (ledger off)."""
    target = store_target(settings)
    if target is None:
        return None
    pricing = pricing_settings(settings)
    if isinstance(target, Path):
        return await asyncio.to_thread(SqliteStore, target, keys=settings.auth.keys, sync=pricing.ledger_sync,
                                       shared=settings.gateway.workers > 1)
    from warmgate.plugins.pricing.postgres_store import PostgresStore

    store = PostgresStore(target, lease=pricing.hold_lease)
    await store.open()
    return store
