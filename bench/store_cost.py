"""The pricing store's own cost per request, without HTTP: what a gateway asks of the database
for one priced request of a key (a hold, its answering mark, then a settle that writes the usage
row, queued after the answer and counted when committed), and for one
of a rate-limited key (the admission, then its end), through the real store classes on a
throwaway PostgreSQL server (fsync on) and a SQLite file. Prints requests per second and the
store's milliseconds per request at c=1 and c=32 on one key, and at c=32 spread over 32 keys
(one key's requests queue for its row; different keys' do not), for docs/deploy.md.

    python bench/store_cost.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from warmgate.core.settings import AuthSettings, Settings
from warmgate.core.usage import Quote, UsageEvent
from warmgate.plugins.pricing.keys import KeyStore
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.plugins.pricing.store import open_store
from warmgate.testing.postgres import PostgresServer

__test__ = False

LEVELS = ((1, 1), (32, 1), (32, 32))
"""(concurrency, keys)."""


def quote(key: str) -> Quote:
    return Quote(function="echo:echo-1", pipeline="echo", model_id="echo-1", units=3, wei=3, key=key)


def event(held: Quote, n: int) -> UsageEvent:
    return UsageEvent(request_id=f"r{n}", time=time.time(), function="echo:echo-1", pipeline="echo",
                      model_id="echo-1", units=3, quoted_wei=3, wei=3, status=200, duration_ms=1.0, key=held.key,
                      hold=held.hold)


async def measure(store: object, keys: list[tuple[str, str]], work: str, requests: int, concurrency: int) -> float:
    """Requests per second of ``work`` (``ledger``: hold + mark + settle, the settles all
    committed; ``limits``: admit + end), worker ``i`` on key ``i % len(keys)``."""
    for _, token in keys:
        await _maybe(store.authenticate(token))  # the key as the gateway caches it
    counter = iter(range(requests))

    async def one_by_one(key: str) -> None:
        for n in counter:
            if work == "ledger":
                held = quote(key)
                await _maybe(store.reserve(held))
                await _maybe(store.answering(held))
                store.settle(event(held, n))
            else:
                admission = await _maybe(store.admit(key))
                await _maybe(admission.end(10))

    start = time.perf_counter()
    await asyncio.gather(*(one_by_one(keys[i % len(keys)][0]) for i in range(concurrency)))
    await store.totals()  # waits for this process's settles to be committed
    return requests / (time.perf_counter() - start)


async def _maybe(value: object) -> object:
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value


async def bench(kind: str, target: str, requests: int) -> list[tuple[str, str, int, float]]:
    store_keys = KeyStore(target)
    made = {"ledger": [store_keys.create(credit=10**30) for _ in range(32)],
            "limits": [store_keys.create(rpm=10**9, tpm=10**12, max_parallel=10**6) for _ in range(32)]}
    store_keys.close()
    pricing = PricingSettings(database=target) if kind == "postgresql" else PricingSettings(ledger=target)
    settings = Settings(auth=AuthSettings(keys=True), sections=[pricing])
    rows = []
    for work, records in made.items():
        for concurrency, count in LEVELS:
            store = await open_store(settings)
            try:
                keys = [(record.id, token) for record, token in records[:count]]
                rate = await measure(store, keys, work, requests, concurrency)
            finally:
                await store.close()
            rows.append((kind, work, concurrency, count, rate))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    server = PostgresServer(fsync=True).init()
    server.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows += asyncio.run(bench("sqlite", str(Path(tmp) / "usage.sqlite"), args.requests))
            rows += asyncio.run(bench("postgresql", server.create_database(), args.requests))
    finally:
        server.stop("immediate")
        server.remove()
    print(f"{'store':<12}{'work per request':<26}{'c':>4}{'keys':>6}{'requests/s':>12}{'store ms/request':>18}")
    for kind, work, concurrency, count, rate in rows:
        label = "hold + mark + settle" if work == "ledger" else "admit + end (rate limit)"
        print(f"{kind:<12}{label:<26}{concurrency:>4}{count:>6}{rate:>12.0f}{1000 * concurrency / rate:>18.2f}")


if __name__ == "__main__":
    main()
