"""The usage ledger over HTTP: one durable row per priced request, written before the answer
reaches the client; totals at GET /usage and from `warmgate usage`; the on_usage hook."""

import json
import subprocess
import sys

import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import AuthSettings, Price
from warmgate.plugins.pricing.ledger import read_totals
from warmgate.plugins.pricing.migrations import open_current
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline


def totals(pricing_database):
    """The ledger read on a connection of its own, as after a crash: only what is committed."""
    db = open_current(pricing_database.target)
    try:
        return read_totals(db)
    finally:
        db.close()


@pytest.fixture
def metered(warmgate_server, pricing_database):
    def start(**settings):
        functions = [FunctionConfig(pipeline="echo", model_id="echo-paid", price=Price(price_per_unit=7)),
                     FunctionConfig(pipeline="echo", model_id="echo-free")]
        config = Settings(functions=functions, sections=[PricingSettings(**pricing_database.pricing())], **settings)
        return warmgate_server(config, pipelines={"echo": EchoPipeline().spec})[1]

    return start


def test_each_answer_is_billable_before_it_arrives_and_settled_after(metered, pricing_database):
    """The answer does not wait for its settle, but for its hold's answering mark: read on a
    connection of its own, as after a crash, each answered request is a usage row or a marked
    hold (which recovery bills), exactly once; GET /usage then shows every one settled."""
    client = metered()
    for n in range(3):
        r = client.post("/echo", json={"prompt": "hey", "model_id": "echo-paid"}, headers={"X-Request-Id": f"paid-{n}"})
        assert r.status_code == 200
        billable = pricing_database.rows("SELECT request_id FROM usage UNION ALL "  # one snapshot of both
                                         "SELECT request_id FROM holds WHERE answering IS NOT NULL")
        assert sorted(request_id for (request_id,) in billable) == [f"paid-{i}" for i in range(n + 1)]
    [total] = client.get("/usage").json()["usage"]
    assert (total["requests"], total["units"], total["wei"]) == (3, 9, "63")
    [total] = totals(pricing_database)
    assert (total.requests, total.units, total.wei) == (3, 9, "63")
    assert pricing_database.rows("SELECT COUNT(*) FROM holds") == [(0,)]
    client.post("/echo", json={"prompt": "hey", "model_id": "echo-free"})
    assert [t["function"] for t in client.get("/usage").json()["usage"]] == ["echo:echo-paid"]  # free: not metered


def test_a_failed_inference_is_recorded_but_not_billed(metered):
    client = metered()
    assert client.post("/echo", json={"prompt": "ok", "model_id": "echo-paid"}).status_code == 200
    assert client.post("/echo", json={"prompt": "no", "model_id": "echo-paid", "fail": True}).status_code == 500
    [total] = client.get("/usage").json()["usage"]
    assert (total["requests"], total["failed"], total["units"], total["wei"]) == (2, 1, 2, "14")


def test_usage_filters_by_time_and_refuses_a_bad_since(metered):
    client = metered()
    client.post("/echo", json={"prompt": "x", "model_id": "echo-paid"})
    assert client.get("/usage", params={"since": "2100-01-01"}).json()["usage"] == []
    assert len(client.get("/usage", params={"since": "0"}).json()["usage"]) == 1
    r = client.get("/usage", params={"since": "last tuesday"})
    assert r.status_code == 400 and "since" in r.json()["detail"]["msg"]


def test_usage_needs_an_api_key_when_auth_is_on(metered):
    client = metered(auth=AuthSettings(api_keys=["sekrit"]))
    assert client.get("/usage").status_code == 401
    assert client.get("/usage", headers={"Authorization": "Bearer sekrit"}).status_code == 200


def test_the_usage_command_prints_totals_from_the_ledger(metered, pricing_database, tmp_path):
    client = metered()
    client.post("/echo", json={"prompt": "four", "model_id": "echo-paid"})
    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"pricing": pricing_database.pricing()}))
    result = subprocess.run([sys.executable, "-m", "warmgate", "usage", "--config", str(config), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [total] = json.loads(result.stdout)["usage"]
    assert (total["function"], total["units"], total["wei"]) == ("echo:echo-paid", 4, "28")


def test_concurrent_requests_are_each_recorded_once(metered, pricing_database):
    import asyncio

    import httpx

    client = metered()

    async def burst():
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as pool:
            replies = await asyncio.gather(*[pool.post("/echo", json={"prompt": "ab", "model_id": "echo-paid"},
                                                       headers={"X-Request-Id": f"burst-{n}"}) for n in range(60)])
        return [r.status_code for r in replies]

    statuses = asyncio.run(burst())
    served = statuses.count(200)
    assert served >= 33 and set(statuses) <= {200, 503}  # one slot, 32 queue places: the rest are turned away
    [total] = totals(pricing_database)
    # every request recorded once; only the served ones billed
    assert (total.requests, total.failed, total.units, total.wei) == (60, 60 - served, 2 * served, str(served * 14))
