"""psycopg 3 against asyncpg for the PostgreSQL store's per-request work: one hold (a conditional
UPDATE of the key's held amount plus the hold's row, one statement) and one settle (the hold
deleted, the usage row inserted, the key's spent raised: one statement), on a throwaway server
(``warmgate.testing.postgres``, fsync on unless ``--no-fsync``). Prints requests per second at c=1 and c=32.

    python bench/store_drivers.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from warmgate.testing.postgres import PostgresServer

SCHEMA = """
CREATE TABLE keys (id text PRIMARY KEY, credit numeric, spent numeric NOT NULL DEFAULT 0, held numeric NOT NULL DEFAULT 0);
CREATE TABLE holds (id text PRIMARY KEY, key text NOT NULL, wei numeric NOT NULL, owner text NOT NULL);
CREATE TABLE usage (id bigserial PRIMARY KEY, request_id text, key text, wei numeric, status int);
INSERT INTO keys (id, credit) VALUES ('k', 1e30);
"""
HOLD = ("WITH k AS (UPDATE keys SET held = held + {w} WHERE id = {k} AND (credit IS NULL OR credit - spent - held >= {w}) "
        "RETURNING id) INSERT INTO holds (id, key, wei, owner) SELECT {h}, id, {w}, 'me' FROM k RETURNING id")
SETTLE = ("WITH h AS (DELETE FROM holds WHERE id = {h} RETURNING wei), "
          "u AS (INSERT INTO usage (request_id, key, wei, status) VALUES ({h}, {k}, {w}, 200)) "
          "UPDATE keys SET spent = spent + {w}, held = held - coalesce((SELECT wei FROM h), 0) WHERE id = {k}")


async def run_psycopg(url: str, n: int, concurrency: int) -> float:
    from psycopg_pool import AsyncConnectionPool

    hold = HOLD.format(w="%(w)s", k="%(k)s", h="%(h)s")
    settle = SETTLE.format(w="%(w)s", k="%(k)s", h="%(h)s")
    async with AsyncConnectionPool(url, min_size=concurrency, max_size=concurrency, kwargs={"autocommit": True},
                                   open=False) as pool:
        await pool.wait()

        async def one() -> None:
            args = {"w": 3, "k": "k", "h": uuid.uuid4().hex}
            async with pool.connection() as db:
                await (await db.execute(hold, args)).fetchone()
            async with pool.connection() as db:
                await db.execute(settle, args)

        return await _timed(one, n, concurrency)


async def run_asyncpg(url: str, n: int, concurrency: int) -> float:
    import asyncpg

    hold = HOLD.format(w="$1::numeric", k="$2", h="$3")
    settle = SETTLE.format(w="$1::numeric", k="$2", h="$3")
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    try:
        async def one() -> None:
            args = (3, "k", uuid.uuid4().hex)
            async with pool.acquire() as db:
                await db.fetchrow(hold, *args)
            async with pool.acquire() as db:
                await db.execute(settle, *args)

        return await _timed(one, n, concurrency)
    finally:
        await pool.close()


async def _timed(one, n: int, concurrency: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await worker(50)  # warm: prepared statements, pool
    start = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    return n // concurrency * concurrency / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--no-fsync", action="store_true", help="the drivers' own cost, without the disk's")
    args = parser.parse_args()
    import psycopg

    server = PostgresServer(fsync=not args.no_fsync).init()
    server.start()
    try:
        url = server.create_database()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(SCHEMA)
        print(f"{'driver':<10}{'c':>4}{'hold+settle/s':>16}{'ms each (c=1)':>15}")
        for concurrency in (1, 32):
            for name, run in (("psycopg", run_psycopg), ("asyncpg", run_asyncpg)):
                rate = asyncio.run(run(url, args.requests, concurrency))
                each = f"{1000 / rate:.2f}" if concurrency == 1 else ""
                print(f"{name:<10}{concurrency:>4}{rate:>16.0f}{each:>15}")
    finally:
        server.stop("immediate")
        server.remove()


if __name__ == "__main__":
    main()
