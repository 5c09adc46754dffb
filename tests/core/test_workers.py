"""`warmgate serve --workers N`: N gateway processes on one port sharing one SQLite file. A
key's budget is spent exactly once across them, its rate limit counted across them, /metrics
adds up every worker's requests, and a configuration whose functions hold a model in process is
refused with one line saying why."""

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from warmgate.plugins.pricing.keys import KeyStore
from warmgate.testing import wait_for
from warmgate.testing.postgres import PricingDatabase
from warmgate.testing.process import free_port, gateway_process


@pytest.fixture
def runner(tmp_path):
    """An echo runner with no keys and no prices: the workers forward to it."""
    path = tmp_path / "runner.yaml"
    path.write_text(json.dumps({"gateway": {"access_log": False}, "pricing": {"ledger": "off"},
                                "functions": [{"pipeline": "echo", "model_id": "echo-1", "max_concurrency": 64,
                                               "max_queue": 512}]}))
    with gateway_process(path) as process:
        yield process


@pytest.fixture
def workers(tmp_path, runner):
    ledger = tmp_path / "usage.sqlite"
    path = tmp_path / "serverless.yaml"
    path.write_text(json.dumps({
        "gateway": {"access_log": False},
        "auth": {"keys": True},
        "pricing": {"ledger": str(ledger)},
        "functions": [{"pipeline": "echo", "model_id": "echo-1", "executor": "remote", "url": runner.url,
                       "price": {"price_per_unit": 1}, "max_concurrency": 64, "max_queue": 512}],
    }))
    with gateway_process(path, workers=2) as gateway:
        yield gateway, PricingDatabase("sqlite", str(ledger))


def make_key(target, **fields):
    store = KeyStore(target)
    try:
        return store.create(**fields)
    finally:
        store.close()


def burst(url, token, count, **fields):
    async def run():
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=count), timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            return await asyncio.gather(*(client.post(f"{url}/echo", json={"prompt": "abc", **fields})
                                          for _ in range(count)))

    return asyncio.run(run())


def test_two_workers_on_one_sqlite_file_serve_exactly_the_100_requests_a_balance_covers(workers, runner):
    gateway, db = workers
    record, token = make_key(db.target, credit=300)  # 100 requests of 3 characters
    responses = burst(gateway.url, token, 200, sleep=0.02)
    assert Counter(r.status_code for r in responses) == {200: 100, 402: 100}
    assert db.rows("SELECT COUNT(*), SUM(CAST(wei AS INTEGER)) FROM usage WHERE key = ?", record.id) == [(100, 300)]
    assert db.rows("SELECT credit, spent FROM keys WHERE id = ?", record.id) == [("300", "300")]
    assert db.rows("SELECT COUNT(*) FROM holds") == [(0,)]
    # /metrics, from whichever worker answers, counts every request of both, once
    for _ in range(4):
        text = httpx.get(f"{gateway.url}/metrics").text
        counted = sum(float(value) for value in re.findall(
            r'warmgate_requests_total\{[^}]*route="/echo"[^}]*\} (\S+)', text))
        assert counted == 200
        assert len([line for line in text.splitlines() if line.startswith('warmgate_in_flight{function="echo')]) == 1
    # and the runner's own counts, summed over both workers (each adds its own every second):
    # every request each worker sent it, once (holds are decided beside the function, so
    # requests refused for credit may have reached it too)
    runner_requests = re.compile(r'warmgate_runner_requests_total\{function="echo:echo-1",runner="([^"]+)"\} (\S+)')

    def runner_counts():
        return [(url, float(n)) for url, n in runner_requests.findall(httpx.get(f"{gateway.url}/metrics").text)]

    def echo_at_runner():
        [fn] = [f for f in httpx.get(f"{runner.url}/functions").json()["functions"] if f["name"] == "echo:echo-1"]
        return fn

    served = echo_at_runner()
    assert wait_for(lambda: runner_counts() == [(runner.url, float(served["requests"]))], timeout=10), runner_counts()
    # a key out of credit spends no more model time than the requests already in flight: its
    # next requests, one at a time, are refused before they run, but for the first each worker
    # sees (the burst above may have sent every refusal to one worker)
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:

        def one_at_a_time(count):
            return [client.post(f"{gateway.url}/echo", json={"prompt": "abc", "sleep": 0.02}).status_code
                    for _ in range(count)]

        assert one_at_a_time(20) == [402] * 20
        after = echo_at_runner()
        assert after["requests"] <= served["requests"] + 2
        # and it stays so: a while later (one connection, so the same worker) none of its
        # requests runs again before its refusal
        time.sleep(5.5)
        assert one_at_a_time(5) == [402] * 5
        assert echo_at_runner()["requests"] == after["requests"]


def test_a_rate_limit_is_counted_across_the_workers(workers):
    gateway, db = workers
    _, token = make_key(db.target, rpm=30)
    # one request at a time, each on a new connection, until both workers have admitted one: a burst
    # alone may find one worker ahead of the other to the file's lock every time, and prove nothing
    first = []
    while db.rows("SELECT COUNT(DISTINCT owner) FROM rate_events") != [(2,)] and len(first) < 20:
        first.append(httpx.post(f"{gateway.url}/echo", json={"prompt": "abc"},
                                headers={"Authorization": f"Bearer {token}"}, timeout=60))
    assert db.rows("SELECT COUNT(DISTINCT owner) FROM rate_events") == [(2,)]
    responses = first + burst(gateway.url, token, 80 - len(first))
    assert Counter(r.status_code for r in responses) == {200: 30, 429: 50}


def test_the_metrics_directory_is_removed_when_the_gateway_stops(tmp_path, runner):
    path = tmp_path / "serverless.yaml"
    path.write_text(json.dumps({"gateway": {"access_log": False}, "pricing": {"ledger": "off"},
                                "functions": [{"pipeline": "echo", "model_id": "echo-1", "executor": "remote",
                                               "url": runner.url}]}))
    with gateway_process(path, workers=2) as gateway:
        [directory] = {line.split("=", 1)[1] for line in _environ(gateway.process.pid)
                       if line.startswith("PROMETHEUS_MULTIPROC_DIR=")} or {None}
        assert httpx.post(f"{gateway.url}/echo", json={"prompt": "abc"}).status_code == 200
        assert any(Path(directory).iterdir())
    assert not Path(directory).exists()


def _environ(pid):
    """The environment of the supervisor's first worker (the supervisor set the variable after it started)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return Path(f"/proc/{children[-1]}/environ").read_bytes().decode(errors="replace").split("\0")


def test_workers_are_refused_for_functions_that_hold_their_model_in_process(tmp_path):
    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"functions": [{"pipeline": "llm", "model_id": "some/model"},
                                                {"pipeline": "llm", "model_id": "far/model", "executor": "remote",
                                                 "url": "http://127.0.0.1:9"},
                                                {"pipeline": "llm", "model_id": "relayed/model",
                                                 "options": {"backend": "vllm", "url": "http://127.0.0.1:9"}},
                                                {"pipeline": "llm", "model_id": "managed/model",
                                                 "options": {"backend": "vllm"}},  # each worker would start vLLM
                                                {"pipeline": "embeddings", "model_id": "ollama/embedder",
                                                 "options": {"backend": "ollama", "host": "http://127.0.0.1:9"}}]}))
    result = subprocess.run([sys.executable, "-m", "warmgate", "serve", "--config", str(config), "--port",
                             str(free_port()), "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "2 workers would each load the model of llm:some/model, llm:managed/model in process" in line
    assert "far/model" not in line and "relayed/model" not in line and "embedder" not in line
