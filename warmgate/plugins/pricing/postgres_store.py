"""The PostgreSQL store, shared by every gateway replica (psycopg 3, async, with a pool).

Holds are rows: taking one is a single statement that raises the key's ``held`` only if
``credit - spent - held`` covers the quote, so exactly one replica gets the last affordable
quote. Settling is a single statement too: the hold deleted, the usage row inserted (unique per
hold, so a retried settle is not billed twice), the key's ``spent`` raised and ``held`` lowered.

Each process is an ``owners`` row whose lease it renews every third of ``pricing.hold_lease``;
every replica, on the same beat, releases the holds of owners whose lease ran out. The rule: an
answer goes out only after its settle has committed, so a hold still there when its owner died
belongs to a request whose client never got its answer; it is released, not billed. A client
that got an answer was billed once, by the settle that let the answer out.
"""

from __future__ import annotations

import asyncio
import collections
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

_HOLD = """
WITH k AS (UPDATE keys SET held = held + %(wei)s
           WHERE id = %(key)s AND (credit IS NULL OR credit - spent - held >= %(wei)s) RETURNING id)
INSERT INTO holds (id, key, wei, owner, function, created)
SELECT %(hold)s, id, %(wei)s, %(owner)s, %(function)s, %(created)s FROM k RETURNING id"""

_INSERT_USAGE = """
INSERT INTO usage (hold, request_id, time, key, function, pipeline, model_id, units, quoted_wei, wei, status,
                   duration_ms, prompt_tokens, completion_tokens)
VALUES (%(hold)s, %(request_id)s, %(time)s, %(key)s, %(function)s, %(pipeline)s, %(model_id)s, %(units)s,
        %(quoted_wei)s, %(wei)s, %(status)s, %(duration_ms)s, %(prompt_tokens)s, %(completion_tokens)s)
ON CONFLICT (hold) DO NOTHING"""
"""An event without a key (an operator's): its row only."""

_SETTLE = f"""
WITH h AS (DELETE FROM holds WHERE id = %(hold)s RETURNING wei),
u AS ({_INSERT_USAGE} RETURNING 1)
UPDATE keys SET spent = spent + CASE WHEN EXISTS (SELECT 1 FROM u) THEN %(wei)s ELSE 0 END,
                held = held - COALESCE((SELECT wei FROM h), 0)
WHERE id = %(key)s"""

_RENEW = """
INSERT INTO owners (id, pid, host, lease_until) VALUES (%(owner)s, %(pid)s, %(host)s, now() + %(lease)s * interval '1 second')
ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until"""

_RELEASED = """
sums AS (SELECT key, SUM(wei) AS wei, COUNT(*) AS n FROM gone GROUP BY key),
released AS (UPDATE keys SET held = keys.held - sums.wei FROM sums WHERE keys.id = sums.key RETURNING sums.n)
SELECT COALESCE(SUM(n), 0) FROM released"""
"""The tail of a statement that deleted holds (``gone``): their keys' ``held`` lowered; how many."""

_REAP = """
WITH dead AS (DELETE FROM owners WHERE lease_until < now() RETURNING id),
gone AS (DELETE FROM holds WHERE owner IN (SELECT id FROM dead)
                              OR owner NOT IN (SELECT id FROM owners) RETURNING key, wei),""" + _RELEASED

_ADMIT = "SELECT * FROM warmgate_admit(%s, %s, %s, %s, %s, %s, %s)"
"""One round trip: the key's use of the window counted and the request admitted, or not (see
``warmgate_admit`` in ``migrations.py``)."""
_END = "SELECT warmgate_end(%s, %s)"

_RELEASE = "WITH gone AS (DELETE FROM holds WHERE id = ANY(%(holds)s) RETURNING key, wei)," + _RELEASED


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
        self._holds: dict[tuple[str, str, int], collections.deque[str]] = {}
        """This process's holds by (key, function, wei): holds alike are interchangeable."""
        self._unsettled: list[tuple[str, dict[str, Any]]] = []
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
        return self._reserve(quote) if quote.key is not None else None  # an operator key: no budget

    async def _reserve(self, quote: Quote) -> None:
        hold = secrets.token_hex(12)
        args = {"wei": quote.wei, "key": quote.key, "hold": hold, "owner": self.owner, "function": quote.function,
                "created": time.time()}
        try:
            async with self._connection() as db:
                taken = await (await db.execute(_HOLD, args)).fetchone()
                if taken is None:
                    row = await (await db.execute("SELECT credit, spent, held FROM keys WHERE id = %s",
                                                  (quote.key,))).fetchone()
        except StoreUnavailable:
            self._uncertain.append(hold)  # committed, its reply lost? The lease beat releases it if so
            raise
        if taken is None:
            credit, spent, held = (int(value) for value in row) if row is not None else (0, 0, 0)
            raise short_of(quote, credit, spent, held)
        self._holds.setdefault((quote.key, quote.function, quote.wei), collections.deque()).append(hold)

    async def settle(self, event: UsageEvent) -> None:
        """Commit the event; retried while the database is away, up to one lease (a later retry
        is idempotent: the row is unique per hold)."""
        holds = self._holds.get((event.key, event.function, event.quoted_wei)) if event.key is not None else None
        hold = holds.popleft() if holds else secrets.token_hex(12)
        args = {"hold": hold, "request_id": event.request_id, "time": event.time, "key": event.key,
                "function": event.function, "pipeline": event.pipeline, "model_id": event.model_id,
                "units": event.units, "quoted_wei": event.quoted_wei, "wei": event.wei, "status": event.status,
                "duration_ms": event.duration_ms, "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens}
        statement = _SETTLE if event.key is not None else _INSERT_USAGE
        deadline = time.monotonic() + self.lease
        while True:
            try:
                async with self._connection() as db:
                    await db.execute(statement, args)
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    self._unsettled.append((statement, args))  # the lease beat commits it once it can
                    raise
                await asyncio.sleep(0.2)

    async def _settle_late(self) -> None:
        """Commit the settles that outlasted their wait (their answers went out, so they are
        billed once, late). Had this process's lease run out meanwhile, another replica released
        their holds; the settle then bills without releasing again."""
        while self._unsettled:
            statement, args = self._unsettled[0]
            async with self._connection() as db:
                await db.execute(statement, args)
            self._unsettled.pop(0)

    async def balance(self, key_id: str) -> Balance | None:
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
                await db.execute(_RELEASE, {"holds": holds})
            del self._uncertain[:len(holds)]

    async def reap(self) -> int:
        """Release the holds of owners whose lease ran out; how many."""
        async with self._connection() as db:
            (count,) = await (await db.execute(_REAP)).fetchone()
        if count:
            _log.warning("holds_released", count=int(count), reason="their gateway's lease expired")
        return int(count)

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
