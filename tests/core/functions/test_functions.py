"""Function lifecycle over real HTTP: single-flight cold load, queue limits, idle unload,
load failure and recovery, warm start, memory-budget eviction, worker threads."""

import asyncio
import time

import httpx

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import GatewaySettings, Resources, Scaling
from warmgate.testing import EchoPipeline, wait_for


def _functions(client):
    return {f["name"]: f for f in client.get("/functions").json()["functions"]}



async def _post_many(url, bodies):
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(*(client.post("/echo", json=body) for body in bodies))


def test_concurrent_first_requests_share_one_load(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", max_concurrency=4, options={"load_delay": 0.5})
    server, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    assert _functions(client)["echo:m"]["state"] == "cold"
    responses = asyncio.run(_post_many(server.url, [{"prompt": f"p{i}"} for i in range(8)]))
    assert [r.status_code for r in responses] == [200] * 8
    assert echo.load_calls == 1
    info = _functions(client)["echo:m"]
    assert info["loads"] == 1 and info["requests"] == 8 and info["state"] == "idle"


def test_full_queue_answers_503_with_retry_after(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", max_concurrency=1, max_queue=1)
    settings = Settings(gateway=GatewaySettings(retry_after=7), functions=[config])
    server, _ = warmgate_server(settings, pipelines={"echo": echo.spec})
    responses = asyncio.run(_post_many(server.url, [{"prompt": "slow", "sleep": 0.5}] * 4))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503]
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "7"
    assert "capacity" in rejected.json()["detail"]["msg"]


def test_idle_function_unloads_and_the_next_request_reloads_it(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", scaling=Scaling(idle_timeout=0.2))
    _, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    assert client.post("/echo", json={"prompt": "a"}).status_code == 200
    assert wait_for(lambda: _functions(client)["echo:m"]["state"] == "cold")
    assert echo.closed == ["m"]  # the runner was closed: scale to zero
    assert client.post("/echo", json={"prompt": "b"}).json()["text"] == "b"
    assert echo.loads == 2
    assert _functions(client)["echo:m"]["loads"] == 2


def test_failed_load_reports_the_reason_and_the_next_request_retries(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", options={"fail_loads": 1})
    _, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    failed = client.post("/echo", json={"prompt": "a"})
    assert failed.status_code == 503
    assert "weights for m are unreadable" in failed.json()["detail"]["msg"]
    info = _functions(client)["echo:m"]
    assert info["state"] == "error" and "unreadable" in info["last_error"]
    assert client.get("/health").json() == {"status": "ERROR"}
    ok = client.post("/echo", json={"prompt": "b"})
    assert ok.status_code == 200
    info = _functions(client)["echo:m"]
    assert info["state"] == "idle" and info["last_error"] is None and info["loads"] == 1
    assert client.get("/health").json() == {"status": "IDLE"}


def test_concurrent_requests_during_a_failed_load_share_the_failure(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", max_concurrency=4,
                            options={"fail_loads": 1, "load_delay": 0.3})
    server, _ = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    responses = asyncio.run(_post_many(server.url, [{"prompt": "x"}] * 4))
    assert [r.status_code for r in responses] == [503] * 4
    assert echo.load_calls == 1


def test_warm_function_loads_at_startup_and_health_says_loading_meanwhile(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", warm=True, options={"load_delay": 0.8})
    _, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    assert client.get("/health").json() == {"status": "LOADING"}
    assert wait_for(lambda: client.get("/health").json() == {"status": "IDLE"})
    assert echo.loads == 1 and _functions(client)["echo:m"]["warm"] is True
    assert client.post("/echo", json={"prompt": "x"}).status_code == 200
    assert echo.load_calls == 1  # the request found it warm


def test_warm_function_is_never_idle_unloaded(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", warm=True, scaling=Scaling(idle_timeout=0.1))
    _, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    assert wait_for(lambda: echo.loads == 1)
    time.sleep(0.5)
    assert _functions(client)["echo:m"]["state"] == "idle" and echo.closed == []


def test_memory_budget_evicts_the_least_recently_used_idle_function(warmgate_server):
    echo = EchoPipeline()
    functions = [FunctionConfig(pipeline="echo", model_id=m, options={"memory_bytes": 600}) for m in ("a", "b", "c")]
    settings = Settings(gateway=GatewaySettings(memory_budget=1300), functions=functions)
    _, client = warmgate_server(settings, pipelines={"echo": echo.spec})
    for model in ("a", "b"):
        assert client.post("/echo", json={"prompt": "x", "model_id": model}).status_code == 200
    client.post("/echo", json={"prompt": "x", "model_id": "a"})  # a is now more recent than b
    assert client.post("/echo", json={"prompt": "x", "model_id": "c"}).status_code == 200
    states = {name: f["state"] for name, f in _functions(client).items()}
    assert states == {"echo:a": "idle", "echo:b": "cold", "echo:c": "idle"}
    assert echo.closed == ["b"]


def test_memory_budget_refuses_a_load_when_nothing_can_be_evicted(warmgate_server):
    echo = EchoPipeline()
    functions = [FunctionConfig(pipeline="echo", model_id="a", warm=True, options={"memory_bytes": 600}),
                 FunctionConfig(pipeline="echo", model_id="b", resources=Resources(memory="1KiB"))]
    settings = Settings(gateway=GatewaySettings(memory_budget=1000), functions=functions)
    _, client = warmgate_server(settings, pipelines={"echo": echo.spec})
    assert wait_for(lambda: echo.loads == 1)
    r = client.post("/echo", json={"prompt": "x", "model_id": "b"})
    assert r.status_code == 503
    assert "memory budget" in r.json()["detail"]["msg"] and "retry-after" in r.headers


def test_sync_runner_runs_in_a_worker_thread_not_on_the_event_loop(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", warm=True)
    server, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    assert wait_for(lambda: echo.loads == 1)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            slow = asyncio.create_task(c.post("/echo", json={"prompt": "x", "sleep": 3}))
            while (await c.get("/functions")).json()["functions"][0]["in_flight"] == 0:
                await asyncio.sleep(0.01)
            health = await c.get("/health")  # answered while the runner is still blocking
            still_running = not slow.done()
            await slow
            return health, still_running

    health, still_running = asyncio.run(scenario())
    assert health.json() == {"status": "OK"}
    assert still_running


def test_a_queued_client_that_disconnects_leaves_the_queue_and_never_runs(warmgate_server):
    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", max_concurrency=1, max_queue=1, warm=True)
    server, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    assert wait_for(lambda: echo.loads == 1)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as a, \
                httpx.AsyncClient(base_url=server.url, timeout=30) as b, \
                httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            first = asyncio.create_task(a.post("/echo", json={"prompt": "first", "sleep": 1.5}))
            while (await c.get("/functions")).json()["functions"][0]["in_flight"] == 0:
                await asyncio.sleep(0.01)
            queued = asyncio.create_task(b.post("/echo", json={"prompt": "gone"}))
            while (await c.get("/functions")).json()["functions"][0]["queued"] == 0:
                await asyncio.sleep(0.01)
            queued.cancel()  # the client gives up and closes its connection
            await b.aclose()
            while (await c.get("/functions")).json()["functions"][0]["queued"] == 1:
                await asyncio.sleep(0.01)
            third = await c.post("/echo", json={"prompt": "third"})  # the queue place is free again
            return (await first).status_code, third

    first_status, third = asyncio.run(scenario())
    assert first_status == 200
    assert third.status_code == 200 and third.json()["text"] == "third"
    info = _functions(client)["echo:m"]
    assert info["requests"] == 2 and info["queued"] == 0 and info["in_flight"] == 0


def test_startup_is_frozen_for_the_garbage_collector_and_a_model_loaded_later_is_not(warmgate_server):
    """``gc.freeze()`` at startup takes what the gateway built out of every full collection; a
    model loads after it, so one that scales to zero is still collected (cycles included)."""
    import gc
    import weakref

    echo = EchoPipeline()
    config = FunctionConfig(pipeline="echo", model_id="m", scaling=Scaling(idle_timeout=0.2))
    server, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": echo.spec})
    assert gc.get_freeze_count() > 0
    tracked = {id(o) for o in gc.get_objects()}  # the frozen are not among them
    assert id(server.app.state.functions) not in tracked
    assert client.post("/echo", json={"prompt": "a"}).status_code == 200
    runner = server.app.state.functions.functions["echo:m"].runner
    runner.cycle = [runner]  # garbage only the cyclic collector can free
    gone = weakref.ref(runner)
    del runner
    assert wait_for(lambda: _functions(client)["echo:m"]["state"] == "cold")
    gc.collect()
    assert gone() is None
