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

    counts = dict(ledger_rows("SELECT request_id, COUNT(*) FROM usage GROUP BY request_id"))
    assert [rid for rid in answered if counts.get(rid) != 1] == []  # every answer is there, exactly once
    [(spent,)] = ledger_rows("SELECT spent FROM keys WHERE id = ?", record.id)
    [(billed,)] = ledger_rows("SELECT SUM(CAST(wei AS BIGINT)) FROM usage WHERE key = ?", record.id)
    assert int(spent) == billed == 4 * len(counts)  # the key paid for exactly the committed rows

    with gateway_process(config) as gateway:  # restarted: nothing is held for the requests that died
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{gateway.url}/echo", json={"prompt": "abcd"}, headers=auth).status_code == 200

        def balance():
            return httpx.get(f"{gateway.url}/usage", headers=auth).json()["balance"]

        # SQLite: holds died with the process; PostgreSQL: released once the dead one's lease ran out
        assert wait_for(lambda: balance()["held_wei"] == "0", timeout=30)
        balance = balance()
    assert int(balance["available_wei"]) == 10**12 - billed - 4
