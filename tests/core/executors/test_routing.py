"""Routing one function over three real runner processes (echo gateways): warm-first without
cold loads, least-busy spread, failover under ``kill -9``, everything down, fallbacks, price
caps, no retry of client errors, and a stream cut mid-way that is not retried."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.hookspecs import hookimpl
from warmgate.core.http.auth import Caller
from warmgate.core.settings import AuthSettings, Price, Routing, RunnerConfig
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline, wait_for
from warmgate.testing.process import free_port, gateway_process


def _runner_config(tmp_path, name, *, warm=False, model_id="echo-1"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({
        "gateway": {"access_log": False},
        "pricing": {"ledger": "off"},
        "functions": [{"pipeline": "echo", "model_id": model_id, "warm": warm, "max_concurrency": 16,
                       "options": {"load_delay": 0.3}}],
    }))
    return path


class Runners:
    """Three runner processes on fixed ports (a killed one restarts on its port)."""

    def __init__(self, tmp_path, warm=(True, True, True), model_ids=("echo-1",) * 3):
        self.ports = [free_port() for _ in range(3)]
        self.configs = [_runner_config(tmp_path, f"runner{i}", warm=w, model_id=m)
                        for i, (w, m) in enumerate(zip(warm, model_ids, strict=True))]
        self.stack = contextlib.ExitStack()
        self.processes = [self.stack.enter_context(gateway_process(c, port=p))
                          for c, p in zip(self.configs, self.ports, strict=True)]
        self.urls = [p.url for p in self.processes]

    def restart(self, i):
        self.processes[i] = self.stack.enter_context(gateway_process(self.configs[i], port=self.ports[i]))

    def function(self, i, model_id="echo-1"):
        [fn] = [f for f in httpx.get(f"{self.urls[i]}/functions").json()["functions"] if f["model_id"] == model_id]
        return fn


@pytest.fixture
def runners(tmp_path):
    made = []

    def start(**kwargs):
        made.append(Runners(tmp_path, **kwargs))
        return made[-1]

    yield start
    for r in made:
        r.stack.close()


@pytest.fixture
def gateway(warmgate_server):
    def start(urls, *, routing=None, runner_fields=None, functions=(), **fields):
        runner_list = [RunnerConfig(url=u, **(runner_fields[i] if runner_fields else {})) for i, u in enumerate(urls)]
        fn = FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", runners=runner_list,
                            max_concurrency=48, routing=routing or Routing(health_interval=0.2), **fields)
        settings = Settings(functions=[fn, *functions], sections=[PricingSettings(ledger="off")])
        _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
        client.timeout = httpx.Timeout(30)
        return client
    return start


def _runner_states(client):
    [fn] = [f for f in client.get("/functions").json()["functions"] if f["name"] == "echo:echo-1"]
    return fn["runners"]


async def _load(url, requests, concurrency, body):
    """``requests`` POSTs /echo, ``concurrency`` at a time; their status codes."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one():
            async with gate:
                return (await client.post("/echo", json=body)).status_code

        return await asyncio.gather(*(one() for _ in range(requests)))


def test_warm_first_leaves_cold_runners_cold_until_the_warm_one_is_full(runners, gateway):
    pool = runners(warm=(True, False, False))
    client = gateway(pool.urls, runner_fields=[{"max_concurrency": 2}] * 3)
    client.post("/echo", json={"prompt": "first"})  # the function connects and reads who is warm
    for i in range(50):
        r = client.post("/echo", json={"prompt": f"n{i}"})
        assert r.status_code == 200, r.text
    assert [pool.function(i)["loads"] for i in range(3)] == [1, 0, 0]
    assert pool.function(0)["requests"] == 51

    # four at once, the warm runner takes two: one cold runner loads (the other stays cold)
    codes = asyncio.run(_load(str(client.base_url), 4, 4, {"prompt": "busy", "sleep": 1.0}))
    assert codes == [200] * 4
    assert sorted(pool.function(i)["loads"] for i in (1, 2)) == [0, 1]


def test_least_busy_spreads_requests_over_every_runner(runners, gateway):
    pool = runners()
    client = gateway(pool.urls, routing=Routing(strategy="least-busy", health_interval=0.2))
    codes = asyncio.run(_load(str(client.base_url), 48, 12, {"prompt": "spread", "sleep": 0.05}))
    assert codes == [200] * 48
    served = [pool.function(i)["requests"] for i in range(3)]
    assert all(n > 0 for n in served) and sum(served) == 48
    assert [r["requests"] for r in _runner_states(client)] == served
    metrics = client.get("/metrics").text
    for url, n in zip(pool.urls, served, strict=True):
        assert f'warmgate_runner_requests_total{{function="echo:echo-1",runner="{url}"}} {float(n)}' in metrics


def test_weighted_sends_each_runner_its_share(runners, gateway):
    pool = runners()
    client = gateway(pool.urls[:2], runner_fields=[{"weight": 1}, {"weight": 4}],
                     routing=Routing(strategy="weighted", health_interval=0.2))
    for i in range(200):
        assert client.post("/echo", json={"prompt": f"w{i}"}).status_code == 200
    light, heavy = (pool.function(i)["requests"] for i in range(2))
    assert light + heavy == 200 and light > 0 and heavy > 2 * light  # 1:4 expected; 1:2 is far out of reach
    assert pool.function(2)["requests"] == 0


def test_a_runner_killed_under_load_costs_no_request_and_comes_back(runners, gateway):
    pool = runners()
    client = gateway(pool.urls, routing=Routing(strategy="least-busy", cooldown=1.0, cooldown_failures=1,
                                                health_interval=0.2))
    body = {"prompt": "steady", "sleep": 0.05}

    async def load_for(seconds):
        codes = []
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as http:
            async def worker():
                while time.monotonic() < deadline:
                    codes.append((await http.post("/echo", json=body)).status_code)
            await asyncio.gather(*(worker() for _ in range(16)))
        return codes

    async def kill_during_load():
        load = asyncio.ensure_future(load_for(5.0))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(pool.processes[1].kill)
        return await load

    codes = asyncio.run(kill_during_load())
    assert len(codes) > 50 and set(codes) == {200}, sorted(set(codes))
    dead = _runner_states(client)[1]
    assert dead["failures"] >= 1 and dead["cooldowns"] >= 1 and dead["state"] == "UNREACHABLE"

    pool.restart(1)
    assert wait_for(lambda: _runner_states(client)[1]["state"] in ("OK", "IDLE"), timeout=10)
    time.sleep(1.1)  # the cooldown is over
    asyncio.run(_load(str(client.base_url), 30, 6, body))
    assert pool.function(1)["requests"] > 0  # back in rotation


class _Bills:
    """Records every usage event, as a ledger would get it."""

    def __init__(self):
        self.events = []

    @hookimpl
    def on_usage(self, event, app):
        self.events.append(event)


def test_all_runners_down_is_a_503_naming_each_failure_or_the_fallback_serves(runners, gateway, register_plugin):
    bills = register_plugin(_Bills(), "routing-bills")
    pool = runners()
    backup = FunctionConfig(pipeline="echo", model_id="echo-backup", name="backup", price=Price(price_per_unit=5))
    client = gateway(pool.urls, routing=Routing(health_interval=0.2, retries=2))
    unbacked = client
    for process in pool.processes:
        process.kill()
    r = unbacked.post("/echo", json={"prompt": "anyone?"})
    assert r.status_code == 503 and "retry-after" in r.headers
    msg = r.json()["detail"]["msg"]
    assert all(url in msg for url in pool.urls) and "unreachable" in msg

    backed = gateway(pool.urls, functions=[backup], fallbacks=["backup"], price=Price(price_per_unit=1))
    r = backed.post("/echo", json={"prompt": "anyone?"})
    assert r.status_code == 200, r.text
    assert r.headers["x-warmgate-function"] == "backup" and r.json()["model_id"] == "echo-backup"
    assert r.headers["x-warmgate-price"] == "35"  # 7 characters at the fallback's 5 wei, not the 1 of echo-1
    [bill] = bills.events
    assert (bill.function, bill.model_id, bill.quoted_wei, bill.wei, bill.status) == ("backup", "echo-backup", 35, 35, 200)


def test_a_price_cap_between_two_runners_uses_only_the_cheaper_and_below_both_is_402(runners, gateway,
                                                                                      register_plugin):
    bills = register_plugin(_Bills(), "routing-bills")
    pool = runners()
    prices = [{"price": Price(price_per_unit=1)}, {"price": Price(price_per_unit=3)}]
    client = gateway(pool.urls[:2], runner_fields=prices, routing=Routing(strategy="least-busy", health_interval=0.2))
    for _ in range(10):
        r = client.post("/echo", json={"prompt": "abcd"}, headers={"X-Max-Price-Per-Unit": "2"})
        assert r.status_code == 200, r.text
        assert r.headers["x-warmgate-price"] == "4"  # 4 characters at the cheaper runner's 1 wei
    assert [pool.function(i)["requests"] for i in range(2)] == [10, 0]
    assert {(e.quoted_wei, e.wei, e.function) for e in bills.events} == {(4, 4, "echo:echo-1")}

    refused = client.post("/echo", json={"prompt": "abcd"}, headers={"X-Max-Price-Per-Unit": "0.5"})
    assert refused.status_code == 402
    assert "1 wei per unit" in refused.json()["detail"]["msg"]

    free = client.post("/echo", json={"prompt": "abcd"})  # no cap: the hold covers the dearest runner
    assert free.status_code == 200 and free.headers["x-warmgate-price"] in ("4", "12")
    last = bills.events[-1]  # billed at the price of the runner that served, held at the dearest
    assert (last.quoted_wei, last.wei) == (12, int(free.headers["x-warmgate-price"]))

    cheapest = gateway(pool.urls[:2], runner_fields=prices, routing=Routing(strategy="cheapest", health_interval=0.2))
    before = pool.function(0)["requests"]
    for _ in range(5):
        r = cheapest.post("/echo", json={"prompt": "abcd"})
        assert r.status_code == 200 and r.headers["x-warmgate-price"] == "4"
    assert pool.function(0)["requests"] == before + 5


def test_a_client_error_from_a_runner_is_answered_as_is_and_not_retried(runners, gateway):
    pool = runners(model_ids=("echo-other",) * 3)  # none serves echo-1: each would answer 400
    client = gateway(pool.urls)
    r = client.post("/echo", json={"prompt": "x", "model_id": "echo-1"})
    assert r.status_code == 400 and "echo-1" in r.json()["detail"]["msg"]
    states = _runner_states(client)
    assert sum(s["requests"] for s in states) == 1 and sum(s["failures"] for s in states) == 0


def test_a_stream_cut_mid_way_ends_with_an_error_event_and_is_not_retried(runners, gateway):
    pool = runners()
    client = gateway(pool.urls)
    body = {"prompt": "word", "repeat": 40, "stream": True, "interval": 0.1}
    with client.stream("POST", "/echo", json=body) as r:
        assert r.status_code == 200
        events = r.iter_lines()
        assert next(events).startswith("data: ")
        served = [i for i, s in enumerate(_runner_states(client)) if s["in_flight"]]
        assert len(served) == 1
        pool.processes[served[0]].kill()
        rest = "\n".join(events)
    assert "remote runner broke off" in rest and "[DONE]" not in rest
    states = _runner_states(client)
    assert sum(s["requests"] for s in states) == 1


def test_the_gateways_own_instance_is_a_runner_loaded_only_when_no_warm_one_can_serve(warmgate_server, tmp_path):
    echo = EchoPipeline()
    with gateway_process(_runner_config(tmp_path, "remote", warm=True)) as remote:
        assert wait_for(lambda: httpx.get(f"{remote.url}/functions").json()["functions"][0]["state"] == "idle")
        fn = FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", max_concurrency=4,
                            runners=[RunnerConfig(url=remote.url), RunnerConfig(executor="local")],
                            routing=Routing(health_interval=0.2, cooldown=60, cooldown_failures=1))
        _, client = warmgate_server(Settings(functions=[fn]), pipelines={"echo": echo.spec})
        for i in range(10):
            assert client.post("/echo", json={"prompt": f"n{i}"}).status_code == 200
        assert echo.loads == 0  # the warm remote runner took them all
        remote.kill()
        r = client.post("/echo", json={"prompt": "here"})
    assert r.status_code == 200 and r.json()["text"] == "here"
    assert echo.loads == 1
    with client.stream("POST", "/echo", json={"prompt": "a b c", "stream": True}) as streamed:
        assert streamed.status_code == 200 and b"".join(streamed.iter_raw()).endswith(b"data: [DONE]\n\n")
    [remote_state, local] = _runner_states(client)
    assert (local["url"], local["state"], local["warm"], local["requests"], local["in_flight"]) == \
        ("local", "OK", True, 2, 0)
    assert remote_state["retries"] == remote_state["failures"] <= 1  # unless a health poll saw it die first
    assert wait_for(lambda: _runner_states(client)[0]["state"] == "UNREACHABLE", timeout=5)


class _KeyAuth:
    """Two keys: one may call the primary function only, the other its fallback too."""

    @hookimpl
    def authenticate(self, token):
        allowed = {"primary-only": {"echo:echo-1"}, "both": {"echo:echo-1", "backup"}}.get(token)
        return Caller(key=token, functions=frozenset(allowed)) if allowed else None


def test_a_fallback_serves_only_a_key_allowed_to_call_it(warmgate_server, register_plugin):
    register_plugin(_KeyAuth(), "routing-keys")
    backup = FunctionConfig(pipeline="echo", model_id="echo-backup", name="backup")
    fn = FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", url="http://127.0.0.1:9",
                        fallbacks=["backup"])
    settings = Settings(functions=[fn, backup], auth=AuthSettings(api_keys=["operator"]),
                        sections=[PricingSettings(ledger="off")])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})

    def call(token):
        return client.post("/echo", json={"prompt": "x"}, headers={"Authorization": f"Bearer {token}"})

    served = call("both")
    assert served.status_code == 200 and served.headers["x-warmgate-function"] == "backup"
    refused = call("primary-only")  # the primary's runner is down and the fallback is not this key's
    assert refused.status_code == 503 and "127.0.0.1:9" in refused.json()["detail"]["msg"]
    assert "backup" not in refused.json()["detail"]["msg"]
