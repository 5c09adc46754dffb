"""Budgets and the ledger under a real gateway process, on each store: many clients on one key
never overspend it, and `kill -9` in the middle of a load loses nothing a client was given."""

import asyncio
import json
import threading
from collections import Counter

import httpx
import pytest

from warmgate.plugins.pricing.keys import KeyStore
from warmgate.testing import wait_for
from warmgate.testing.process import gateway_process

from .keyed_load import load


@pytest.fixture(params=["full"])
def config(tmp_path, request, pricing_database):
    """A gateway requiring keys, with one echo function at 1 wei per character."""
    path = tmp_path / "serverless.yaml"
    path.write_text(json.dumps({
        "gateway": {"access_log": False},
        "auth": {"keys": True},
        "pricing": pricing_database.pricing(ledger_sync=request.param, hold_lease=2),  # PostgreSQL: holds of a
        # dead gateway are released 2 s after its last renewal
        "functions": [{"pipeline": "echo", "model_id": "echo-1", "price": {"price_per_unit": 1},
                       "max_concurrency": 8, "max_queue": 512}],
    }))
    return path


@pytest.fixture
def make_key(pricing_database):
    def make(credit):
        store = KeyStore(pricing_database.target)
        try:
            return store.create(credit=credit)
        finally:
            store.close()

    return make


@pytest.fixture
def ledger_rows(pricing_database):
    return pricing_database.rows


def test_200_parallel_requests_on_a_balance_for_100_serve_exactly_100(config, make_key, ledger_rows):
    record, token = make_key(credit=300)  # 100 requests of 3 characters

    async def burst(url):
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            requests = [client.post("/echo", json={"prompt": "abc", "sleep": 0.02}) for _ in range(200)]
            return await asyncio.gather(*requests)

    with gateway_process(config) as gateway:
        responses = asyncio.run(burst(gateway.url))
        statuses = Counter(r.status_code for r in responses)
        balance = httpx.get(f"{gateway.url}/usage", headers={"Authorization": f"Bearer {token}"}).json()["balance"]
    assert statuses == {200: 100, 402: 100}
    assert balance == {"key": record.id, "name": "", "credit_wei": "300", "spent_wei": "300", "held_wei": "0",
                       "available_wei": "0"}
    [(spent,)] = ledger_rows("SELECT spent FROM keys WHERE id = ?", record.id)
    [(billed, rows)] = ledger_rows("SELECT SUM(CAST(wei AS BIGINT)), COUNT(*) FROM usage WHERE key = ?", record.id)
    assert (int(spent), billed, rows) == (300, 300, 100)  # 402s are refused before a quote is held: not in the ledger


@pytest.mark.parametrize("config", ["full", "normal"], indirect=True)  # normal: not synced, still crash-safe
def test_kill_9_during_load_loses_no_answered_request_and_leaves_no_hold(config, make_key, ledger_rows):
    record, token = make_key(credit=10**12)
    answered: list[str] = []
    stop = threading.Event()
    with gateway_process(config) as gateway:
        workers = load([gateway.url], token, answered, [], stop, sleep=0.002, per_url=6)
        assert wait_for(lambda: len(answered) >= 300, timeout=20)
        gateway.kill()  # mid-load: requests are in flight, holds are taken
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
    assert len(answered) >= 300

    with gateway_process(config) as gateway:  # restarted: the dead one's holds settled by the rule of holds.py
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{gateway.url}/echo", json={"prompt": "abcd"}, headers=auth).status_code == 200

        def balance():
            return httpx.get(f"{gateway.url}/usage", headers=auth).json()["balance"]

        # SQLite: settled as it starts; PostgreSQL: once the dead one's lease ran out
        assert wait_for(lambda: balance()["held_wei"] == "0", timeout=30)
        balance = balance()
    assert ledger_rows("SELECT COUNT(*) FROM holds") == [(0,)]
    counts = dict(ledger_rows("SELECT request_id, COUNT(*) FROM usage GROUP BY request_id"))
    assert [rid for rid in answered if counts.get(rid) != 1] == []  # every answer is there, exactly once
    assert max(counts.values()) == 1  # and every request at most once (some billed by recovery: answers cut off)
    [(spent,)] = ledger_rows("SELECT spent FROM keys WHERE id = ?", record.id)
    [(billed,)] = ledger_rows("SELECT SUM(CAST(wei AS BIGINT)) FROM usage WHERE key = ?", record.id)
    assert int(spent) == billed == 4 * len(counts)  # the key paid for exactly the committed rows
    assert int(balance["available_wei"]) == 10**12 - billed


def test_kill_9_bills_an_answer_that_had_started_at_its_quote_and_releases_one_that_had_not(
        config, make_key, ledger_rows):
    """The answer no longer waits for its settle: its hold is marked before the first byte. A
    gateway killed mid-stream (the client has its first words) and mid-inference (no byte yet)
    leaves one hold of each kind; the next gateway bills the first at its quote and releases
    the second."""
    record, token = make_key(credit=10**6)
    auth = {"Authorization": f"Bearer {token}"}
    statuses: list[object] = []

    def post_running():
        try:
            statuses.append(httpx.post(f"{gateway.url}/echo", json={"prompt": "abcd", "sleep": 30}, timeout=60,
                                       headers={**auth, "X-Request-Id": "running"}).status_code)
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)

    with gateway_process(config) as gateway:
        with httpx.Client(base_url=gateway.url, headers=auth, timeout=60) as client, client.stream(
                "POST", "/echo", json={"prompt": "ab cd ef", "stream": True, "interval": 30},
                headers={"X-Request-Id": "started"}) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()  # kept open: a dropped iterator closes the connection (a client gone)
            assert next(lines) == 'data: {"delta":"ab"}'  # the client has part of its answer
            quoted = int(answer.headers["x-warmgate-price"])
            running = threading.Thread(target=post_running)
            running.start()
            def held():
                return client.get("/usage").json()["balance"]["held_wei"]

            assert wait_for(lambda: held() == str(quoted + 4), timeout=20)  # both held: "running" is running
            # only the answer that started is marked (one SQLite process writes no unmarked row at all)
            assert ledger_rows("SELECT request_id FROM holds WHERE answering IS NOT NULL") == [("started",)]
            gateway.kill()
        running.join(timeout=30)
    assert statuses and statuses[0] != 200
    assert ledger_rows("SELECT COUNT(*) FROM usage") == [(0,)]  # nothing was settled: the gateway died first

    with gateway_process(config) as gateway:  # SQLite: settled as it starts; PostgreSQL: once the lease ran out
        assert wait_for(lambda: ledger_rows("SELECT COUNT(*) FROM holds") == [(0,)], timeout=30)
        balance = httpx.get(f"{gateway.url}/usage", headers=auth).json()["balance"]
    rows = [(rid, int(wei), int(quoted_wei), status) for rid, wei, quoted_wei, status in
            ledger_rows("SELECT request_id, wei, quoted_wei, status FROM usage")]
    assert rows == [("started", quoted, quoted, 200)]  # billed once, at its quote; "running" is not there
    assert (balance["spent_wei"], balance["held_wei"]) == (str(quoted), "0")
