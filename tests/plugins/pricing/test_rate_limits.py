"""Per-key rate limits on both stores: rpm, tpm (LLM prompt plus completion tokens) and
max-parallel, refused with 429, Retry-After and OpenAI's x-ratelimit-* headers (which successful
answers carry too), read by httpx and by the openai SDK; `warmgate keys update` changes them
for a running gateway."""

import asyncio
import json

import httpx
import openai
import pytest
from click.testing import CliRunner

from warmgate import FunctionConfig, Settings
from warmgate.core.cli import cli
from warmgate.core.plugins import get_pipelines, load_plugins, pm
from warmgate.core.settings import AuthSettings, Price
from warmgate.plugins.pricing.keys import KeyStore
from warmgate.plugins.pricing.rate_limits import duration
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline, wait_for

ECHO = FunctionConfig(pipeline="echo", model_id="echo-1", price=Price(price_per_unit=1), max_concurrency=8)


@pytest.fixture
def store(pricing_database):
    keys = KeyStore(pricing_database.target)
    yield keys
    keys.close()


@pytest.fixture
def limited(warmgate_server, pricing_database):
    settings = Settings(functions=[ECHO], auth=AuthSettings(keys=True),
                        sections=[PricingSettings(**pricing_database.pricing())])
    return warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})


def call(client, token, **fields):
    return client.post("/echo", json={"prompt": "abc", **fields}, headers={"Authorization": f"Bearer {token}"})


def test_rpm_serves_the_limit_then_429_with_retry_after_and_openai_headers(limited, store):
    _, client = limited
    _, token = store.create(rpm=3)
    answers = [call(client, token) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0"]
    assert {r.headers["x-ratelimit-limit-requests"] for r in answers} == {"3"}
    assert all(r.headers["x-ratelimit-reset-requests"].endswith("s") for r in answers)
    assert "x-ratelimit-limit-tokens" not in answers[0].headers  # no tpm set
    over = call(client, token)
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    assert "3 requests a minute" in over.json()["detail"]["msg"]  # the route's own error shape
    _, other = store.create()  # another key, no limits: unaffected, and no rate-limit headers
    r = call(client, other)
    assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers


def test_a_refused_request_is_not_billed_and_does_not_count(limited, store, pricing_database):
    _, client = limited
    record, token = store.create(rpm=1, credit=100)
    assert call(client, token).status_code == 200
    assert [call(client, token).status_code for _ in range(3)] == [429, 429, 429]
    assert pricing_database.rows("SELECT COUNT(*) FROM usage WHERE key = ?", record.id) == [(1,)]
    assert store.get(record.id).balance == 97


def test_max_parallel_refuses_the_request_beyond_and_frees_the_slot_before_the_answer_ends(limited, store):
    server, _ = limited
    _, token = store.create(max_parallel=2)

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=30) as client:
            return await asyncio.gather(*(client.post("/echo", json={"prompt": "abc", "sleep": 1.0})
                                          for _ in range(5)))

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    assert statuses == [200, 200, 429, 429, 429]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as client:
        # one after another: each finds the one before it over (its slot freed before its last byte)
        assert [client.post("/echo", json={"prompt": "abc"}).status_code for _ in range(10)] == [200] * 10


def test_keys_create_list_and_update_limits_and_a_running_gateway_applies_them(limited, pricing_database, tmp_path):
    _, client = limited
    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"auth": {"keys": True}, "pricing": pricing_database.pricing(), "functions": []}))
    load_plugins()  # as `warmgate` does before it adds the plugins' commands
    pm.hook.register_commands(cli=cli)
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "--config", str(config), "--rpm", "60", "--tpm", "100000",
                               "--max-parallel", "4", "--json"])
    assert made.exit_code == 0, made.output
    created = json.loads(made.output)
    key, token = created["id"], created["token"]
    assert (created["rpm"], created["tpm"], created["max_parallel"]) == (60, 100000, 4)
    listed = runner.invoke(cli, ["keys", "list", "--config", str(config)])
    assert "rpm 60, tpm 100000, parallel 4" in listed.output
    assert call(client, token).headers["x-ratelimit-limit-requests"] == "60"

    updated = runner.invoke(cli, ["keys", "update", key, "--config", str(config), "--rpm", "2", "--tpm", "none"])
    assert updated.exit_code == 0, updated.output
    assert "rate limits rpm 2, parallel 4" in updated.output
    assert wait_for(lambda: call(client, token).status_code == 429, timeout=10)  # within a second or so
    r = call(client, token)
    assert r.headers["x-ratelimit-limit-requests"] == "2" and "x-ratelimit-limit-tokens" not in r.headers

    assert runner.invoke(cli, ["keys", "update", key, "--config", str(config), "--rpm", "none"]).exit_code == 0
    assert wait_for(lambda: call(client, token).status_code == 200, timeout=10)
    for bad in (["--rpm", "0"], ["--rpm", "many"], []):
        refused = runner.invoke(cli, ["keys", "update", key, "--config", str(config), *bad])
        assert refused.exit_code == 2 and "Traceback" not in refused.output
    missing = runner.invoke(cli, ["keys", "update", "key_nope", "--config", str(config), "--rpm", "5"])
    assert missing.exit_code == 1 and "no key 'key_nope'" in missing.output


@pytest.fixture(scope="module")
def tiny_chat(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["llm"]))


def test_tpm_counts_prompt_and_completion_tokens_and_the_openai_sdk_raises_rate_limit_error(
        warmgate_server, pricing_database, store, tiny_chat):
    settings = Settings(functions=[FunctionConfig(pipeline="llm", model_id=tiny_chat, aliases=["tiny"])],
                        auth=AuthSettings(keys=True), sections=[PricingSettings(**pricing_database.pricing())])
    server, _ = warmgate_server(settings)
    _, token = store.create(tpm=30)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0) as sdk:
        used = 0
        while used < 30:  # tokens are counted when each answer ends: served until the minute's 30 are spent
            raw = sdk.chat.completions.with_raw_response.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
            assert raw.headers["x-ratelimit-limit-tokens"] == "30"
            assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 30 - used
            usage = raw.parse().usage
            used += usage.prompt_tokens + usage.completion_tokens
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    response = refused.value.response
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert f"30 tokens a minute ({used} in the last 60 s)" in response.json()["detail"]["msg"]


def test_the_window_moves(pricing_database, store):
    """A request leaves the window a minute (here: half a second) after it was admitted."""
    from warmgate.plugins.pricing.rate_limits import SqliteRateLimits

    record, _ = store.create(rpm=2)
    from warmgate.core.http.errors import RateLimited

    async def run():
        if pricing_database.kind == "sqlite":
            limits = SqliteRateLimits(pricing_database.target, window=0.5)
            admit, close = limits.admit, limits.close
        else:
            from warmgate.plugins.pricing.postgres_store import PostgresStore

            pg = PostgresStore(pricing_database.target)
            await pg.open()
            pg.window = 0.5
            admit, close = pg._admit, pg.close
        try:
            for _ in range(2):
                await (await admit(record)).end(0)
            with pytest.raises(RateLimited):
                await admit(record)
            await asyncio.sleep(0.6)
            await (await admit(record)).end(0)
        finally:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    asyncio.run(run())


@pytest.mark.parametrize(("seconds", "text"), [(0.02, "20ms"), (1, "1s"), (59.5, "59.5s"), (60, "1m0s"),
                                               (90.25, "1m30.25s"), (360, "6m0s")])
def test_reset_durations_are_written_as_openai_writes_them(seconds, text):
    assert duration(seconds) == text
