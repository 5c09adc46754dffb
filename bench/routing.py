"""Routing one function over three runners, against one runner.

Three runner processes (the echo test gateway, ``warmgate.testing.process``; a request with
``sleep: 0.02`` is a 20 ms model) and two gateway processes in front of them: one whose
function has one runner (``url``), one whose function has all three (``least-busy``). The load
is an aiohttp client in this process. Printed:

- throughput at c=48 with the 20 ms model, three runners against one (rounds interleaved, medians);
- p50 latency at c=1 with no model time: the runner called directly, a gateway with one runner,
  with three, and (``--base DIR``, a checkout from before routing) that checkout's one-runner
  gateway; and the router's own work per request in this process (choose, count, score), for one
  runner and for three;
- p99 at c=16 over a 5 s window in which one of the three runners is ``kill -9``-ed, against a
  5 s window with no kill (and the requests that failed, which should be none).

All processes share this machine's cores, so the runners compete with the gateways and the
client: the numbers describe this machine, not a cluster.

    python bench/routing.py [--seconds 5] [--rounds 3] [--base /path/to/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from warmgate.testing.process import free_port, gateway_process

MODEL = {"prompt": "hello", "sleep": 0.02}
BARE = {"prompt": "hello"}


def _write(directory: Path, name: str, config: dict) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def _runner(directory: Path, i: int) -> Path:
    return _write(directory, f"runner{i}", {
        "gateway": {"access_log": False}, "pricing": {"ledger": "off"},
        "functions": [{"pipeline": "echo", "model_id": "echo-1", "warm": True, "max_concurrency": 64,
                       "max_queue": 512}]})


def _gateway(directory: Path, name: str, urls: list[str]) -> Path:
    function = {"pipeline": "echo", "model_id": "echo-1", "executor": "remote", "warm": True,
                "max_concurrency": 64, "max_queue": 512}
    if len(urls) == 1:
        function["url"] = urls[0]
    else:
        function["runners"] = [{"url": url, "max_concurrency": 64} for url in urls]
        function["routing"] = {"strategy": "least-busy", "cooldown": 1, "cooldown_failures": 1,
                               "health_interval": 0.5}
    return _write(directory, name, {"gateway": {"access_log": False}, "pricing": {"ledger": "off"},
                                    "functions": [function]})


async def _drive(url: str, body: dict, concurrency: int, seconds: float | None = None,
                 requests: int | None = None) -> tuple[list[float], int]:
    """Latencies of the requests that succeeded, and how many failed."""
    latencies: list[float] = []
    failed = 0
    left = requests
    deadline = time.perf_counter() + seconds if seconds is not None else None
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal failed, left
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                if left is not None:
                    if left <= 0:
                        return
                    left -= 1
                started = time.perf_counter()
                try:
                    async with session.post(f"{url}/echo", json=body) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, failed


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _kill_window(url: str, seconds: float, kill: object) -> tuple[list[float], int]:
    load = asyncio.ensure_future(_drive(url, MODEL, 16, seconds))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(kill)  # type: ignore[arg-type]
    return await load


@contextlib.contextmanager
def _base_gateway(base: str, config: Path):
    """The echo gateway process of another checkout (``PYTHONPATH=base``), on a free port."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": base, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "warmgate.testing.process", str(config), str(port), "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _router_cost(runners: int, requests: int = 200_000) -> float:
    """Microseconds of the router's own work per request: choose, started, succeeded, ended."""
    from warmgate import FunctionConfig
    from warmgate.core.executors.routing import Router
    from warmgate.core.settings import Routing, RunnerConfig

    config = FunctionConfig(pipeline="echo", executor="remote", routing=Routing(strategy="least-busy"),
                            runners=[RunnerConfig(url=f"http://runner-{i}:8000") for i in range(runners)])
    router = Router(config)
    started = time.perf_counter()
    for _ in range(requests):
        chosen = router.choose()
        assert chosen is not None
        router.started(chosen)
        router.succeeded(chosen, served=True)
        router.ended(chosen)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", help="a checkout from before routing, for its one-runner gateway at c=1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        ports = [free_port() for _ in range(3)]
        runners = [stack.enter_context(gateway_process(_runner(directory, i), port=port))
                   for i, port in enumerate(ports)]
        urls = [r.url for r in runners]
        one = stack.enter_context(gateway_process(_gateway(directory, "one", urls[:1])))
        three = stack.enter_context(gateway_process(_gateway(directory, "three", urls)))
        for gateway in (one, three):
            asyncio.run(_drive(gateway.url, MODEL, 8, requests=200))  # warm up connections

        throughput: dict[str, list[float]] = {"one": [], "three": []}
        for _ in range(args.rounds):
            for name, gateway in (("one", one), ("three", three)):
                latencies, failed = asyncio.run(_drive(gateway.url, MODEL, 48, args.seconds))
                throughput[name].append(len(latencies) / args.seconds)
        paths = [("runner direct", urls[0]), ("one", one.url), ("three", three.url)]
        if args.base:
            paths.append(("one, before routing (--base)",
                          stack.enter_context(_base_gateway(args.base, _gateway(directory, "base", urls[:1])))))
        c1: dict[str, list[float]] = {name: [] for name, _ in paths}
        for _ in range(args.rounds):
            for name, url in paths:
                latencies, _ = asyncio.run(_drive(url, BARE, 1, requests=1000))
                c1[name].append(_p(latencies, 0.5))

        calm, calm_failed = asyncio.run(_drive(three.url, MODEL, 16, args.seconds))
        killed, killed_failed = asyncio.run(_kill_window(three.url, args.seconds, runners[1].kill))

    one_rps, three_rps = statistics.median(throughput["one"]), statistics.median(throughput["three"])
    print(f"\n20 ms model, c=48, {args.seconds:g} s x {args.rounds} rounds (median)")
    print("| runners | requests/s | vs one |\n|---|---|---|")
    print(f"| 1 | {one_rps:,.0f} | 1.00x |")
    print(f"| 3, least-busy | {three_rps:,.0f} | {three_rps / one_rps:.2f}x |")
    print("\nc=1, no model time, 1000 requests x rounds (median p50)")
    print("| path | p50 ms |\n|---|---|")
    for name, values in c1.items():
        print(f"| {name} | {statistics.median(values):.3f} |")
    added = statistics.median(c1["three"]) - statistics.median(c1["one"])
    print(f"| three runners, added to one | {added:+.3f} |")
    if args.base:
        before = statistics.median(c1["one, before routing (--base)"])
        print(f"| one runner, added by routing | {statistics.median(c1['one']) - before:+.3f} |")
    print("\nthe router's own work per request, in this process")
    print("| runners | µs |\n|---|---|")
    for n in (1, 3):
        print(f"| {n} | {_router_cost(n):.2f} |")
    print(f"\n20 ms model, c=16, 3 runners, {args.seconds:g} s windows")
    print("| window | requests | failed | p50 ms | p99 ms |\n|---|---|---|---|---|")
    print(f"| no kill | {len(calm)} | {calm_failed} | {_p(calm, 0.5):.1f} | {_p(calm, 0.99):.1f} |")
    print(f"| runner 2 killed at 1 s | {len(killed)} | {killed_failed} | {_p(killed, 0.5):.1f} | "
          f"{_p(killed, 0.99):.1f} |")


if __name__ == "__main__":
    main()
