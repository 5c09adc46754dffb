"""The PostgreSQL store, shared by every gateway replica (psycopg 3, async, with a pool).

Holds are rows: taking one is a single statement that raises the key's ``held`` only if
``credit - spent - held`` covers the quote, so exactly one replica gets the last affordable
quote; it runs while the function does. Marking it ``answering`` before the answer goes out is
one statement that does not wait for the database's disk (``warmgate_answering``). Settling,
after the answer, is a single statement too: the hold deleted, the usage row inserted (unique
per hold, so a retried settle is not billed twice), the key's ``spent`` raised and ``held``
lowered.

Each process is an ``owners`` row whose lease it renews every third of ``pricing.hold_lease``;
every replica, on the same beat (and when it starts), settles the holds of owners whose lease
ran out by the rule of ``holds.py``: billed at the quote if marked ``answering``, else released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from warmgate.core.http.auth import Caller
from warmgate.core.http.errors import Unauthorized
from warmgate.core.usage import Quote, UsageEvent
from warmgate.plugins.pricing.accounts import Balance, short_of
from warmgate.plugins.pricing.database import StoreUnavailable, unreachable, where
from warmgate.plugins.pricing.keys import _COLUMNS, KeyRecord, _record, hash_token
from warmgate.plugins.pricing.ledger import UsageTotal, sum_usage, totals_query
from warmgate.plugins.pricing.migrations import open_current
from warmgate.plugins.pricing.rate_limits import WINDOW, KeyAdmission, WindowUse, decide, new_event_id

__all__ = ["PostgresStore"]

_log = structlog.get_logger("warmgate.plugins.pricing")

POOL_SIZE = 16
"""Connections per process: a request holds one for one statement at a time."""
CONNECT_WAIT = 2.0
"""Seconds a request waits for a connection before its 503: the store is down or saturated."""

_HOLD_VALUES = "%(wei)s, %(owner)s, %(function)s, %(created)s, %(pipeline)s, %(model_id)s, %(units)s, %(request_id)s"
_HOLD = f"""
WITH k AS (UPDATE keys SET held = held + %(wei)s
           WHERE id = %(key)s AND (credit IS NULL OR credit - spent - held >= %(wei)s) RETURNING id)
INSERT INTO holds (id, key, wei, owner, function, created, pipeline, model_id, units, request_id)
SELECT %(hold)s, id, {_HOLD_VALUES} FROM k RETURNING id"""
_HOLD_UNKEYED = f"""
INSERT INTO holds (id, key, wei, owner, function, created, pipeline, model_id, units, request_id)
VALUES (%(hold)s, NULL, {_HOLD_VALUES}) RETURNING id"""
"""An operator key's request: no budget, its row for recovery only."""
_ANSWERING = "SELECT warmgate_answering(%s, %s)"

_INSERT_USAGE = """
INSERT INTO usage (hold, request_id, time, key, function, pipeline, model_id, units, quoted_wei, wei, status,
                   duration_ms, prompt_tokens, completion_tokens)
VALUES (%(hold)s, %(request_id)s, %(time)s, %(key)s, %(function)s, %(pipeline)s, %(model_id)s, %(units)s,
        %(quoted_wei)s, %(wei)s, %(status)s, %(duration_ms)s, %(prompt_tokens)s, %(completion_tokens)s)
ON CONFLICT (hold) DO NOTHING"""

_SETTLE = f"""
WITH h AS (DELETE FROM holds WHERE id = %(hold)s RETURNING wei),
u AS ({_INSERT_USAGE} RETURNING 1)
UPDATE keys SET spent = spent + CASE WHEN EXISTS (SELECT 1 FROM u) THEN %(wei)s ELSE 0 END,
                held = held - COALESCE((SELECT wei FROM h), 0)
WHERE id = %(key)s"""
"""An event without a key (an operator's): its hold deleted and its row, no key updated."""

_RENEW = """
INSERT INTO owners (id, pid, host, lease_until) VALUES (%(owner)s, %(pid)s, %(host)s, now() + %(lease)s * interval '1 second')
ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until"""

_GONE = "RETURNING id, key, wei, function, pipeline, model_id, units, request_id, answering, created"
_SETTLED = """
billed AS (INSERT INTO usage (hold, request_id, time, key, function, pipeline, model_id, units, quoted_wei, wei,
                              status, duration_ms)
           SELECT id, request_id, answering, key, function, pipeline, model_id, units, wei, wei, 200,
                  round(((answering - created) * 1000)::numeric, 3) FROM gone WHERE answering IS NOT NULL
           ON CONFLICT (hold) DO NOTHING RETURNING key, wei),
unheld AS (SELECT key, SUM(wei) AS wei FROM gone WHERE key IS NOT NULL GROUP BY key),
spending AS (SELECT key, SUM(wei) AS wei FROM billed WHERE key IS NOT NULL GROUP BY key),
keyed AS (UPDATE keys SET held = keys.held - unheld.wei, spent = keys.spent + COALESCE(spending.wei, 0)
          FROM unheld LEFT JOIN spending ON spending.key = unheld.key WHERE keys.id = unheld.key RETURNING 1)
SELECT (SELECT COUNT(*) FROM billed), (SELECT COUNT(*) FROM gone) - (SELECT COUNT(*) FROM billed)"""
"""The tail of a statement that deleted holds (``gone``, their ``_GONE`` columns), by the rule of
``holds.py``: the ``answering`` ones billed at their quote, every one's ``held`` lowered;
(billed, released). A hold already settled has a usage row: not billed again."""

_REAP = f"""
WITH dead AS (DELETE FROM owners WHERE lease_until < now() RETURNING id),
gone AS (DELETE FROM holds WHERE owner IN (SELECT id FROM dead)
                              OR owner NOT IN (SELECT id FROM owners) {_GONE}),""" + _SETTLED

_ADMIT = "SELECT * FROM warmgate_admit(%s, %s, %s, %s, %s, %s, %s)"
"""One round trip: the key's use of the window counted and the request admitted, or not (see
``warmgate_admit`` in ``migrations.py``)."""
_END = "SELECT warmgate_end(%s, %s)"

_RELEASE = f"WITH gone AS (DELETE FROM holds WHERE id = ANY(%(holds)s) {_GONE})," + _SETTLED


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("usage_not_recorded", error=str(task.exception()))


class PostgresStore:
    def __init__(self, url: str, *, lease: float = 10.0, refresh: float = 1.0) -> None:
        self.url = url
        self.lease = lease
        self._refresh = refresh
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._keys: dict[str, tuple[KeyRecord, float]] = {}
        self._records: dict[str, KeyRecord] = {}
        """Keys by id, as ``authenticate`` last read them: their rate limits."""
        self.window = WINDOW
        self._unended: list[tuple[str, int]] = []
        """Rate-limited requests whose end did not reach the database: retried by the lease beat."""
        self._queued: list[dict[str, Any]] = []
        """Settles on their way to the database (the answers went out), for ``_settler``."""
        self._settler: asyncio.Task[None] | None = None
        self._unsettled: list[dict[str, Any]] = []
        """Settles that outlasted their wait for the database: committed later, by the lease beat."""
        self._uncertain: list[str] = []
        """Holds whose statement failed with the connection: refused with 503, so released if taken."""
        self._pool: Any = None
        self._beat: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Check the schema (made if the database is empty), open the pool, take the lease."""
        from psycopg_pool import AsyncConnectionPool

        (await asyncio.to_thread(open_current, self.url)).close()
        self._pool = AsyncConnectionPool(self.url, min_size=2, max_size=POOL_SIZE, open=False, timeout=CONNECT_WAIT,
                                         kwargs={"autocommit": True})
        try:
            await self._pool.open(wait=True, timeout=10)
            await self._renew()
            await self.reap()  # gateways that died before this one started, once their lease ran out
        except Exception as exc:
            await self._pool.close()
            raise unreachable(self.url, exc) from None
        self._beat = asyncio.create_task(self._keep_lease(), name="warmgate-hold-lease")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; ``StoreUnavailable`` (503, Retry-After) when the database is not
        answering. Errors of the SQL itself are bugs and propagate as they are."""
        import psycopg
        import psycopg_pool

        try:
            async with self._pool.connection() as db:
                yield db
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise unreachable(self.url, exc) from None

    async def authenticate(self, token: str) -> Caller | None:
        token_hash = hash_token(token)
        cached = self._keys.get(token_hash)
        now = time.monotonic()
        if cached is None or now - cached[1] > self._refresh:
            try:
                async with self._connection() as db:
                    row = await (await db.execute(f"SELECT {_COLUMNS} FROM keys WHERE hash = %s",
                                                  (token_hash,))).fetchone()
            except StoreUnavailable:
                if cached is None:
                    raise
                row = None  # the store is down: the key as last read (its hold will say 503 if it must)
            else:
                if row is None:
                    self._keys.pop(token_hash, None)
                    return None
            if row is not None:
                cached = self._keys[token_hash] = (_record(row), now)
                self._records[cached[0].id] = cached[0]
        record = cached[0]
        if record.revoked is not None:
            raise Unauthorized(f"key {record.id} was revoked")
        return Caller(key=record.id, functions=frozenset(record.functions) if record.functions is not None else None)

    def admit(self, key_id: str) -> Any:
        record = self._records.get(key_id)
        return self._admit(record) if record is not None and record.limited else None

    async def _admit(self, record: KeyRecord) -> KeyAdmission:
        event = new_event_id()
        async with self._connection() as db:
            row = await (await db.execute(_ADMIT, (record.id, event, self.owner, self.window, record.rpm, record.tpm,
                                                   record.max_parallel))).fetchone()
        admitted, requests, tokens, running, *times, now = row
        use = WindowUse(admitted, int(requests), int(tokens), int(running),
                        *(None if moment is None else float(moment) for moment in times), float(now))
        headers = decide(record, use, self.window)
        return KeyAdmission(headers, lambda tokens: self._end(event, tokens))

    async def _end(self, event: str, tokens: int) -> None:
        try:
            async with self._connection() as db:
                await db.execute(_END, (event, tokens))
        except StoreUnavailable:
            self._unended.append((event, tokens))  # still running, as far as the database knows: the beat ends it

    async def _end_late(self) -> None:
        while self._unended:
            event, tokens = self._unended[0]
            async with self._connection() as db:
                await db.execute(_END, (event, tokens))
            self._unended.pop(0)

    def reserve(self, quote: Quote) -> Any:
        return self._reserve(quote)

    async def _reserve(self, quote: Quote) -> None:
        args = {"wei": quote.wei, "key": quote.key, "hold": quote.hold, "owner": self.owner, "function": quote.function,
                "created": time.time(), "pipeline": quote.pipeline, "model_id": quote.model_id, "units": quote.units,
                "request_id": quote.request_id}
        statement = _HOLD if quote.key is not None else _HOLD_UNKEYED
        try:
            async with self._connection() as db:
                taken = await (await db.execute(statement, args)).fetchone()
            if taken is None and self._settles_pending():  # this process's answers may hold what it needs
                await self.flush()
                async with self._connection() as db:
                    taken = await (await db.execute(statement, args)).fetchone()
            if taken is None:
                async with self._connection() as db:
                    row = await (await db.execute("SELECT credit, spent, held FROM keys WHERE id = %s",
                                                  (quote.key,))).fetchone()
        except StoreUnavailable:
            self._uncertain.append(quote.hold)  # committed, its reply lost? The lease beat releases it if so
            raise
        if taken is None:
            credit, spent, held = (int(value) for value in row) if row is not None else (0, 0, 0)
            raise short_of(quote, credit, spent, held)

    async def answering(self, quote: Quote) -> None:
        async with self._connection() as db:
            await db.execute(_ANSWERING, (quote.hold, time.time()))

    def settle(self, event: UsageEvent) -> None:
        """Queue the event after its answer: one task commits every queued settle in one
        transaction (one WAL flush, and one wait for the key's row, per batch)."""
        self._queued.append({"hold": event.hold or secrets.token_hex(12), "request_id": event.request_id,
                             "time": event.time, "key": event.key, "function": event.function,
                             "pipeline": event.pipeline, "model_id": event.model_id, "units": event.units,
                             "quoted_wei": event.quoted_wei, "wei": event.wei, "status": event.status,
                             "duration_ms": event.duration_ms, "prompt_tokens": event.prompt_tokens,
                             "completion_tokens": event.completion_tokens})
        if self._settler is None or self._settler.done():
            self._settler = asyncio.ensure_future(self._settle_queued())
            self._settler.add_done_callback(_log_failure)

    async def _settle_queued(self) -> None:
        """Commit the queued settles, batch by batch; a batch is retried while the database is
        away, up to one lease, then left to the lease beat (a retry is idempotent: the row is
        unique per hold)."""
        while self._queued:
            batch, self._queued = self._queued, []
            deadline = time.monotonic() + self.lease
            while True:
                try:
                    async with self._connection() as db, db.transaction(), db.cursor() as cursor:
                        await cursor.executemany(_SETTLE, batch)
                    break
                except StoreUnavailable:
                    if time.monotonic() > deadline:
                        self._unsettled.extend(batch)  # the lease beat commits them once it can
                        break
                    await asyncio.sleep(0.2)

    def _settles_pending(self) -> bool:
        return self._settler is not None and not self._settler.done()

    async def flush(self) -> None:
        """Wait for the settles this process has queued (a read after them sees them)."""
        while self._settler is not None and not self._settler.done():
            await asyncio.shield(self._settler)

    async def _settle_late(self) -> None:
        """Commit the settles that outlasted their wait (their answers went out, so they are
        billed once, late). Had this process's lease run out meanwhile, another replica billed
        their holds at the quote; the settle then finds the row there and bills nothing more."""
        while self._unsettled:
            async with self._connection() as db:
                await db.execute(_SETTLE, self._unsettled[0])
            self._unsettled.pop(0)

    async def balance(self, key_id: str) -> Balance | None:
        await self.flush()
        async with self._connection() as db:
            row = await (await db.execute("SELECT name, credit, spent, held FROM keys WHERE id = %s",
                                          (key_id,))).fetchone()
        if row is None:
            return None
        name, credit, spent, held = row
        credit = None if credit is None else int(credit)
        spent, held = int(spent), int(held)
        return Balance(key=key_id, name=name, credit_wei=None if credit is None else str(credit),
                       spent_wei=str(spent), held_wei=str(held),
                       available_wei=None if credit is None else str(credit - spent - held))

    async def totals(self, *, key: str | None = None, since: float | None = None) -> list[UsageTotal]:
        await self.flush()
        query, args = totals_query("postgresql", key=key, since=since)
        async with self._connection() as db:
            rows = await (await db.execute(query.replace("?", "%s"), args)).fetchall()
        return sum_usage(rows)

    async def _renew(self) -> None:
        async with self._connection() as db:
            await db.execute(_RENEW, {"owner": self.owner, "pid": os.getpid(), "host": socket.gethostname(),
                                      "lease": self.lease})

    async def _release_uncertain(self) -> None:
        if self._uncertain:
            holds = list(self._uncertain)
            async with self._connection() as db:
                await db.execute(_RELEASE, {"holds": holds})  # refused with a 503: never answering
            del self._uncertain[:len(holds)]

    async def reap(self) -> tuple[int, int]:
        """Settle the holds of owners whose lease ran out (``holds.py``); (billed, released)."""
        async with self._connection() as db:
            billed, released = await (await db.execute(_REAP)).fetchone()
        if billed or released:
            _log.warning("dangling_holds_settled", billed=int(billed), released=int(released),
                         reason="their gateway's lease expired")
        return int(billed), int(released)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._renew()
                await self._settle_late()
                await self._end_late()
                await self._release_uncertain()
                await self.reap()
            except StoreUnavailable as exc:  # down for now: the next beat tries again
                _log.warning("hold_lease_not_renewed", error=exc.msg)

    async def close(self) -> None:
        """Stop renewing; this process's holds are all settled by now (requests drained), so the
        owner row goes."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        await self.flush()
        with contextlib.suppress(StoreUnavailable):
            await self._settle_late()
        if self._unsettled:
            _log.error("usage_not_recorded", events=len(self._unsettled), reason="the pricing database is unreachable")
        with contextlib.suppress(StoreUnavailable):
            async with self._connection() as db:
                await db.execute("DELETE FROM owners WHERE id = %s", (self.owner,))
        await self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({where(self.url)})"
