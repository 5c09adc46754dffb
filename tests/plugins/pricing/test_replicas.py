"""Several gateway processes on one PostgreSQL database: a key's budget is never spent twice, a
replica killed mid-load leaves no hold behind once its lease runs out, and a database restart
is 503 + Retry-After while it is down, then business as usual, with nothing half-written."""

import asyncio
import json
import threading
from collections import Counter

import httpx
import pytest

from warmgate.plugins.pricing.keys import KeyStore
from warmgate.testing import wait_for
from warmgate.testing.postgres import PostgresServer, PricingDatabase
from warmgate.testing.process import gateway_process

from .keyed_load import load

LEASE = 2.0


def write_config(tmp_path, url, name="serverless"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({
        "gateway": {"access_log": False},
        "auth": {"keys": True},
        "pricing": {"database": url, "hold_lease": LEASE},
        "functions": [{"pipeline": "echo", "model_id": "echo-1", "price": {"price_per_unit": 1},
                       "max_concurrency": 8, "max_queue": 512}],
    }))
    return path


def make_key(url, credit, **limits):
    store = KeyStore(url)
    try:
        return store.create(credit=credit, **limits)
    finally:
        store.close()


def ledger_is_whole(db, key_id, answered, credit):
    """Every answered request is in the ledger exactly once, nothing is held, and the key paid
    for exactly its rows."""
    counts = dict(db.rows("SELECT request_id, COUNT(*) FROM usage GROUP BY request_id"))
    assert [rid for rid in answered if counts.get(rid) != 1] == []
    assert max(counts.values(), default=1) == 1
    [(spent, held, left)] = db.rows("SELECT spent, held, credit - spent - held FROM keys WHERE id = ?", key_id)
    [(billed,)] = db.rows("SELECT COALESCE(SUM(wei), 0) FROM usage WHERE key = ?", key_id)
    assert db.rows("SELECT COUNT(*) FROM holds") == [(0,)]
    assert (int(spent), int(held), int(left)) == (int(billed), 0, credit - int(billed))


def post(replica, token):
    return httpx.post(f"{replica.url}/echo", json={"prompt": "abc"}, timeout=60,
                      headers={"Authorization": f"Bearer {token}"})


def warm_up(token, *replicas):
    """One request on each replica: the function loaded, the pool open and the key read on all,
    so none starts a burst late. Which replica serves which request of a burst is first come,
    first served at the key's row; on a busy machine one replica can take them all, so the
    tests assert the totals, not a split."""
    assert [post(replica, token).status_code for replica in replicas] == [200] * len(replicas)


@pytest.fixture
def two_replicas(tmp_path, postgres_url):
    config = write_config(tmp_path, postgres_url)
    with gateway_process(config) as first, gateway_process(config) as second:
        yield first, second, PricingDatabase("postgresql", postgres_url)


def test_200_parallel_requests_over_two_replicas_on_a_balance_for_100_serve_exactly_100(two_replicas):
    first, second, db = two_replicas
    record, token = make_key(db.target, credit=306)  # a warm-up on each replica, then 100 requests of 3 characters
    warm_up(token, first, second)
    lowest: list[int] = []
    done = threading.Event()

    def watch_balance():  # the balance as any replica sees it, sampled throughout the burst
        while not done.is_set():
            lowest.append(min(int(v) for (v,) in db.rows("SELECT credit - spent - held FROM keys WHERE id = ?",
                                                         record.id)))

    async def burst():
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200), timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            requests = [client.post(f"{(first, second)[n % 2].url}/echo", json={"prompt": "abc", "sleep": 0.02})
                        for n in range(200)]
            return await asyncio.gather(*requests)

    watcher = threading.Thread(target=watch_balance)
    watcher.start()
    try:
        responses = asyncio.run(burst())
    finally:
        done.set()
        watcher.join()
    # the 100 served are what the credit pays for, and both replicas know the key is spent
    assert Counter(r.status_code for r in responses) == {200: 100, 402: 100}
    assert [post(replica, token).status_code for replica in (first, second)] == [402, 402]
    assert lowest and min(lowest) >= 0
    ledger_is_whole(db, record.id, [], credit=306)
    [(rows,)] = db.rows("SELECT COUNT(*) FROM usage WHERE key = ?", record.id)
    assert rows == 102


def test_a_key_limited_to_60_rpm_is_served_60_times_in_the_minute_over_both_replicas(two_replicas):
    """150 requests in a burst, well within one minute: admission is exact across replicas, so
    exactly 60 are served and the other 90 are 429 with Retry-After."""
    first, second, db = two_replicas
    record, token = make_key(db.target, credit=None, rpm=62)  # a warm-up on each replica, then the 60
    warm_up(token, first, second)

    async def burst():
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=150), timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            return await asyncio.gather(*(client.post(f"{(first, second)[n % 2].url}/echo", json={"prompt": "abc"})
                                          for n in range(150)))

    responses = asyncio.run(burst())
    assert Counter(r.status_code for r in responses) == {200: 60, 429: 90}  # whichever replica took them
    assert [post(replica, token).status_code for replica in (first, second)] == [429, 429]
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(60))  # each admission saw every one before it, whichever replica took it
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in responses if r.status_code == 429)
    assert db.rows("SELECT COUNT(*) FROM rate_events WHERE key = ?", record.id) == [(62,)]
    assert db.rows("SELECT COUNT(*) FROM usage WHERE key = ?", record.id) == [(62,)]


def test_kill_9_of_one_replica_mid_load_releases_its_holds_after_the_lease(two_replicas):
    first, second, db = two_replicas
    credit = 10**12
    record, token = make_key(db.target, credit=credit)
    answered: list[str] = []
    statuses: list[tuple[int, str | None]] = []
    stop = threading.Event()
    threads = load([first.url, second.url], token, answered, statuses, stop, sleep=0.2)  # mostly holding
    held_by_first = ("SELECT COUNT(*) FROM holds JOIN owners ON holds.owner = owners.id WHERE owners.pid = ?",
                     first.process.pid)
    try:
        assert wait_for(lambda: len(answered) >= 60 and db.rows(*held_by_first) != [(0,)], timeout=60)
        first.kill()  # mid-load: its requests are in flight, their holds taken
        [(orphans,)] = db.rows(*held_by_first)
        served = len(answered)
        assert wait_for(lambda: len(answered) >= served + 30, timeout=60)  # the other replica goes on
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert orphans > 0
    # the dead replica's holds go once its lease runs out (the live one releases them)
    assert wait_for(lambda: db.rows("SELECT COUNT(*) FROM holds") == [(0,)], timeout=10 * LEASE)
    assert db.rows("SELECT COUNT(*) FROM owners") == [(1,)]
    ledger_is_whole(db, record.id, answered, credit)
    assert {status for status, _ in statuses} == {200}


def test_a_database_restart_mid_load_is_503_with_retry_after_then_recovers(tmp_path):
    server = PostgresServer().init()  # a server of its own: this test stops it
    server.start()
    try:
        url = server.create_database()
        db = PricingDatabase("postgresql", url)
        credit = 10**12
        record, token = make_key(url, credit=credit)
        answered: list[str] = []
        statuses: list[tuple[int, str | None]] = []
        stop = threading.Event()
        with gateway_process(write_config(tmp_path, url)) as gateway:
            threads = load([gateway.url], token, answered, statuses, stop)
            try:
                assert wait_for(lambda: len(answered) >= 100, timeout=60)
                server.stop("fast")  # cuts every connection
                assert wait_for(lambda: any(status == 503 for status, _ in statuses[-20:]), timeout=30)
                server.start()
                refused = len(statuses)
                assert wait_for(lambda: any(s == 200 for s, _ in statuses[refused:]), timeout=60)  # recovered
                served = len(answered)
                assert wait_for(lambda: len(answered) >= served + 50, timeout=60)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
            # the settles that waited out the outage are committed too (the lease beat retries them)
            assert wait_for(lambda: db.rows("SELECT COUNT(*) FROM holds") == [(0,)], timeout=10 * LEASE)
        assert {status for status, _ in statuses} <= {200, 503}
        assert all(retry is not None for status, retry in statuses if status == 503)
        ledger_is_whole(db, record.id, answered, credit)
    finally:
        server.stop("immediate")
        server.remove()


def test_an_answer_whose_settle_outlasts_an_outage_is_billed_once_when_the_database_is_back():
    from warmgate.core.usage import Quote, UsageEvent
    from warmgate.plugins.pricing.database import StoreUnavailable
    from warmgate.plugins.pricing.postgres_store import PostgresStore

    server = PostgresServer().init()
    server.start()
    try:
        url = server.create_database()
        db = PricingDatabase("postgresql", url)
        record, _ = make_key(url, credit=100)
        quote = Quote(function="echo:echo-1", pipeline="echo", model_id="echo-1", units=4, wei=4, key=record.id)
        event = UsageEvent(request_id="late", time=1.0, function=quote.function, pipeline="echo", model_id="echo-1",
                           units=4, quoted_wei=4, wei=4, status=200, duration_ms=1.0, key=record.id, hold=quote.hold)

        async def outage():
            store = PostgresStore(url, lease=1.0)
            await store.open()
            try:
                await store.reserve(quote)
                await store.answering(quote)
                server.stop("fast")
                store.settle(event)  # after the answer: retried for one lease, then left to the lease beat
                await store.flush()
                with pytest.raises(StoreUnavailable, match="is unreachable"):
                    await store.balance(record.id)
                server.start()
                for _ in range(100):  # the beat commits it once the database answers
                    if db.rows("SELECT COUNT(*) FROM usage") == [(1,)]:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await store.close()

        asyncio.run(outage())
        ledger_is_whole(db, record.id, ["late"], credit=100)
        assert db.rows("SELECT wei FROM usage")[0][0] == 4
    finally:
        server.stop("immediate")
        server.remove()
