"""Holds in the SQLite file, for the gateway processes of ``serve --workers`` that share it.

One process keeps holds in memory (``accounts.py``); several on one file each see only their
own, so a budget could be spent once per process. Here a hold is a row of ``holds``, taken under
``BEGIN IMMEDIATE`` (the file's write lock: one process at a time) only if the key's committed
``credit - spent`` minus the holds of live processes covers the quote, so exactly one process
takes the last affordable quote. It is taken while the function runs (``holds.py``), marked by
the ledger before the answer goes out, and deleted by the ledger's transaction that raises
``spent`` (``SqliteLedger.settle``), so the two never both count or both miss. A process that
died leaves holds that the next reserve of their key settles by the rule of ``holds.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

from warmgate.core.usage import Quote
from warmgate.plugins.pricing.accounts import Balance, short_of
from warmgate.plugins.pricing.database import Database, connect
from warmgate.plugins.pricing.holds import INSERT_HOLD, hold_row, recover_dangling

__all__ = ["SqliteHolds"]


class SqliteHolds:
    def __init__(self, path: Path, owner: str) -> None:
        self._db = Database(connect(path, synchronous="OFF"), "sqlite")  # a hold lost to a power cut had no answer
        self.owner = owner
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warmgate-holds")

    async def reserve(self, quote: Quote) -> None:
        short = await asyncio.get_running_loop().run_in_executor(self._thread, self._take, quote)
        if short is not None:
            raise short_of(quote, *short)

    def _take(self, quote: Quote) -> tuple[int, int, int] | None:
        """Take the hold; ``(credit, spent, held)`` when they do not cover it."""
        db = self._db
        with db.transaction():
            recover_dangling(db.connection, self.owner, key=quote.key)  # dead processes' holds of the key
            row = db.execute("SELECT credit, spent FROM keys WHERE id = ?", (quote.key,)).fetchone()
            credit, spent = (None, 0) if row is None or row[0] is None else (int(row[0]), int(row[1]))
            held = sum(int(wei) for (wei,) in db.execute("SELECT wei FROM holds WHERE key = ?", (quote.key,)))
            if credit is not None and credit - spent - held < quote.wei:
                return credit, spent, held
            db.execute(INSERT_HOLD, hold_row(quote, self.owner))
        return None

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
