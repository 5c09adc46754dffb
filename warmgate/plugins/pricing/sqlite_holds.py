"""Holds in the SQLite file, for the gateway processes of ``serve --workers`` that share it.

One process keeps holds in memory (``accounts.py``); several on one file each see only their
own, so a budget could be spent once per process. Here a hold is a row of ``holds``, taken under
``BEGIN IMMEDIATE`` (the file's write lock: one process at a time) only if the key's committed
``credit - spent`` minus the holds of live processes covers the quote, so exactly one process
takes the last affordable quote. Settling deletes the row in the ledger's transaction that
raises ``spent`` (``SqliteLedger.submit_async(event, hold)``), so the two never both count or
both miss. A process that died leaves holds whose requests got no answer (an answer goes out
only after its settle committed): they are released, not billed, by the next reserve.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from pathlib import Path

from warmgate.core.usage import Quote, UsageEvent
from warmgate.plugins.pricing.accounts import Balance, short_of
from warmgate.plugins.pricing.database import Database, connect
from warmgate.plugins.pricing.owners import is_alive, new_owner
from warmgate.plugins.pricing.rate_limits import new_event_id

__all__ = ["SqliteHolds"]


class SqliteHolds:
    def __init__(self, path: Path) -> None:
        self._db = Database(connect(path, synchronous="OFF"), "sqlite")  # a hold lost to a power cut had no answer
        self.owner = new_owner()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warmgate-holds")
        self._mine: dict[tuple[str, str, int], collections.deque[str]] = {}
        """This process's holds by (key, function, wei): holds alike are interchangeable."""

    async def reserve(self, quote: Quote) -> None:
        hold = new_event_id()
        short = await asyncio.get_running_loop().run_in_executor(self._thread, self._take, quote, hold)
        if short is not None:
            raise short_of(quote, *short)
        self._mine.setdefault((str(quote.key), quote.function, quote.wei), collections.deque()).append(hold)

    def settled(self, event: UsageEvent) -> str | None:
        """The hold ``event`` settles (for the ledger to delete with its row), if it had one."""
        holds = self._mine.get((str(event.key), event.function, event.quoted_wei)) if event.key is not None else None
        return holds.popleft() if holds else None

    def _take(self, quote: Quote, hold: str) -> tuple[int, int, int] | None:
        """Take the hold; ``(credit, spent, held)`` when they do not cover it."""
        db = self._db
        with db.transaction():
            row = db.execute("SELECT credit, spent FROM keys WHERE id = ?", (quote.key,)).fetchone()
            credit, spent = (None, 0) if row is None or row[0] is None else (int(row[0]), int(row[1]))
            held = self._held(quote.key)
            if credit is not None and credit - spent - held < quote.wei:
                return credit, spent, held
            db.execute("INSERT INTO holds (id, key, wei, owner, created) VALUES (?, ?, ?, ?, ?)",
                       (hold, quote.key, str(quote.wei), self.owner, time.time()))
        return None

    def _held(self, key: str | None) -> int:
        """The key's holds by live processes; those of dead ones are released."""
        rows = self._db.execute("SELECT owner, wei FROM holds WHERE key = ?", (key,)).fetchall()
        dead = {owner for owner, _ in rows if not is_alive(owner, self.owner)}
        for owner in dead:
            self._db.execute("DELETE FROM holds WHERE owner = ?", (owner,))
        return sum(int(wei) for owner, wei in rows if owner not in dead)

    async def balance(self, key_id: str) -> Balance | None:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._balance, key_id)

    def _balance(self, key_id: str) -> Balance | None:
        row = self._db.execute("SELECT name, credit, spent FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            return None
        name, credit, spent = row
        held = sum(int(wei) for (wei,) in self._db.execute("SELECT wei FROM holds WHERE key = ?", (key_id,)))
        credit = None if credit is None else int(credit)
        return Balance(key=key_id, name=name, credit_wei=None if credit is None else str(credit),
                       spent_wei=str(int(spent)), held_wei=str(held),
                       available_wei=None if credit is None else str(credit - int(spent) - held))

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._db.close()
