"""Dangling holds on each store, by the rule of ``warmgate/plugins/pricing/holds.py``: a gateway
that died after marking a hold ``answering`` left a client that may have its answer, so the hold
is billed at its quote; one that died before left none, so it is released. A settled hold is
never billed again. The stores are driven through their own interface, as the gateway drives
them, and "dies" without settling: a SQLite store closed with its holds in the file (its
successor in this process counts as another gateway), a PostgreSQL store whose lease runs out."""

import asyncio
import contextlib
import time

import pytest

from warmgate.core.usage import Quote, UsageEvent
from warmgate.plugins.pricing.keys import KeyStore
from warmgate.plugins.pricing.postgres_store import PostgresStore
from warmgate.plugins.pricing.store import SqliteStore

LEASE = 0.5


def open_store(pricing_database):
    if pricing_database.kind == "sqlite":
        return asyncio.to_thread(SqliteStore, pricing_database.target, keys=True, sync="full")

    async def postgres():
        store = PostgresStore(pricing_database.target, lease=LEASE)
        await store.open()
        return store

    return postgres()


async def die(store):
    """Stop without settling anything, as ``kill -9`` does (PostgreSQL: the lease stops being
    renewed; SQLite: the rows stay in the file, whose next gateway is another process)."""
    if isinstance(store, SqliteStore):
        await store.close()  # its holds stay in the file, unsettled
        return
    store._beat.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await store._beat
    await store._pool.close()


async def recover(pricing_database):
    """A gateway started after the dead one: on SQLite it settles the holds as it opens; on
    PostgreSQL once their owner's lease has run out."""
    store = await open_store(pricing_database)
    if isinstance(store, PostgresStore):
        deadline = time.monotonic() + 30
        while pricing_database.rows("SELECT COUNT(*) FROM holds") != [(0,)] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            await store.reap()
    return store


def quote(key, request_id, wei):
    return Quote(function="echo:echo-1", pipeline="echo", model_id="echo-1", units=wei, wei=wei, key=key,
                 request_id=request_id)


def settled(q, status=200):
    return UsageEvent(request_id=q.request_id, time=time.time(), function=q.function, pipeline=q.pipeline,
                      model_id=q.model_id, units=q.units, quoted_wei=q.wei, wei=q.wei if status < 400 else 0,
                      status=status, duration_ms=1.0, key=q.key, hold=q.hold)


@pytest.fixture
def key(pricing_database):
    store = KeyStore(pricing_database.target)
    try:
        return store.create(credit=1000)
    finally:
        store.close()


async def maybe(value):
    return await value if asyncio.isfuture(value) or asyncio.iscoroutine(value) else value


def test_a_dangling_hold_is_billed_at_its_quote_once_its_answer_had_started_and_released_before(
        pricing_database, key):
    record, token = key

    async def scenario():
        store = await open_store(pricing_database)
        await maybe(store.authenticate(token))
        running, answering, done = quote(record.id, "running", 7), quote(record.id, "answering", 30), \
            quote(record.id, "done", 100)
        for q in (running, answering, done):
            await maybe(store.reserve(q))
        await maybe(store.answering(answering))  # its first byte may have gone out
        await maybe(store.answering(done))
        store.settle(settled(done))  # answered and settled: billed by its settle only
        assert [t.requests for t in await store.totals()] == [1]
        await die(store)
        successor = await recover(pricing_database)
        await maybe(successor.authenticate(token))
        balance = await maybe(successor.balance(record.id))
        await successor.close()
        return balance

    balance = asyncio.run(scenario())
    rows = pricing_database.rows("SELECT request_id, CAST(wei AS TEXT), CAST(quoted_wei AS TEXT), status, units "
                                 "FROM usage ORDER BY request_id")
    assert [tuple(map(str, row)) for row in rows] == [("answering", "30", "30", "200", "30"),
                                                      ("done", "100", "100", "200", "100")]
    assert pricing_database.rows("SELECT COUNT(*) FROM holds") == [(0,)]
    [(spent,)] = pricing_database.rows("SELECT spent FROM keys WHERE id = ?", record.id)
    assert int(spent) == 130  # the running request's 7 released: its client got nothing
    assert (balance.spent_wei, balance.held_wei, balance.available_wei) == ("130", "0", "870")


def test_a_hold_refused_for_lack_of_balance_leaves_no_row_and_a_failed_request_releases_its_hold(
        pricing_database, key):
    record, token = key

    async def scenario():
        store = await open_store(pricing_database)
        await maybe(store.authenticate(token))
        big, small = quote(record.id, "big", 900), quote(record.id, "small", 200)
        await maybe(store.reserve(big))
        with pytest.raises(Exception, match="wei available"):
            await maybe(store.reserve(small))  # 1000 - 900 held < 200
        store.settle(settled(big, status=500))  # failed: released, its row not billed
        await maybe(store.reserve(small))  # the released balance is there at once
        await maybe(store.answering(small))
        store.settle(settled(small))
        balance = await maybe(store.balance(record.id))
        await store.close()
        return balance

    balance = asyncio.run(scenario())
    assert (balance.spent_wei, balance.held_wei, balance.available_wei) == ("200", "0", "800")
    assert pricing_database.rows("SELECT COUNT(*) FROM holds") == [(0,)]
    rows = pricing_database.rows("SELECT request_id, status FROM usage ORDER BY request_id")
    assert [tuple(row) for row in rows] == [("big", 500), ("small", 200)]


def test_an_operator_keys_answer_is_recovered_into_the_ledger_too(pricing_database):
    async def scenario():
        store = await open_store(pricing_database)
        free = quote(None, "operator", 5)
        await maybe(store.reserve(free))
        await maybe(store.answering(free))
        await die(store)
        successor = await recover(pricing_database)
        await successor.close()

    asyncio.run(scenario())
    rows = pricing_database.rows("SELECT request_id, key, CAST(wei AS TEXT) FROM usage")
    assert [tuple(row) for row in rows] == [("operator", None, "5")]
