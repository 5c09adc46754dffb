"""The LLM plugin over real HTTP with a tiny local chat model on the transformers backend,
driven by the openai SDK (sync and async) and by httpx for the Livepeer-shaped SSE."""

import asyncio
import base64
import json
import time

import httpx
import openai
import pytest

import warmgate
from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.plugins.llm.backend import Delta
from warmgate.plugins.llm.runner import StopScanner
from warmgate.testing import wait_for


@pytest.fixture(scope="session")
def tiny_chat(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["llm"]))


@pytest.fixture
def llm(warmgate_server, tiny_chat):
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, aliases=["tiny"], max_concurrency=2)
    server, client = warmgate_server(Settings(functions=[config]))
    return server, client


@pytest.fixture
def sdk():
    """``sdk(base_url, **options)``: an ``openai.OpenAI`` client, closed after the test."""
    clients = []

    def make(base_url, **options):
        client = openai.OpenAI(base_url=base_url, api_key="unused", **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _sse_data(lines):
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def test_llm_answers_in_the_livepeer_shape(llm, tiny_chat):
    _, client = llm
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model", "created", "usage", "choices"}
    assert body["model"] == tiny_chat
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 1 <= usage["completion_tokens"] <= 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_llm_streams_deltas_then_a_finish_chunk_then_done(llm):
    _, client = llm
    body = {"messages": [{"role": "user", "content": "count"}], "max_tokens": 8, "stream": True, "model": "tiny"}
    with client.stream("POST", "/llm", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = _sse_data(r.iter_lines())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    final = chunks[-1]["choices"][0]
    assert final["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] <= 8
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in chunks)
    assert all("finish_reason" not in c["choices"][0] for c in chunks[:-1])


@pytest.mark.parametrize(("body", "loc"), [
    ({"messages": []}, ["body", "messages"]),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, ["body", "messages", 0, "role"]),
    ({"messages": [{"role": "user"}]}, ["body", "messages", 0, "content"]),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 2.5}, ["body", "temperature"]),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, ["body", "top_p"]),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, ["body", "max_tokens"]),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, ["body", "max_tokens"]),
])
def test_llm_bad_input_is_422_naming_the_field(llm, body, loc):
    _, client = llm
    r = client.post("/llm", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_unknown_model_is_400_naming_it_and_the_served_ones(llm, tiny_chat):
    _, client = llm
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}], "model": "org/none"})
    assert r.status_code == 400
    assert "'org/none'" in r.json()["detail"]["msg"] and tiny_chat in r.json()["detail"]["msg"]


@pytest.mark.parametrize("prefix", ["/v1", "/llm"])
def test_openai_sdk_chat_completion(llm, prefix, tiny_chat, sdk):
    server, _ = llm
    client = sdk(server.url + prefix)
    completion = client.chat.completions.create(model="tiny", max_tokens=6,
                                                messages=[{"role": "system", "content": "be brief"},
                                                          {"role": "user", "content": "hello"}])
    assert completion.object == "chat.completion"
    assert completion.model == tiny_chat
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens <= 6 and completion.usage.prompt_tokens > 0


def test_openai_sdk_stream_with_usage(llm, sdk):
    server, _ = llm
    client = sdk(server.url + "/v1")
    stream = client.chat.completions.create(model="", messages=[{"role": "user", "content": "go"}],
                                            max_completion_tokens=7, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 7


def test_async_openai_sdk_stream_and_seeded_sampling_is_repeatable(llm):
    server, _ = llm

    async def run():
        client = openai.AsyncOpenAI(base_url=server.url + "/llm", api_key="unused")
        texts = []
        for _ in range(2):
            stream = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                          max_tokens=10, temperature=1.0, seed=7, stream=True)
            texts.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
        await client.close()
        return texts

    first, second = asyncio.run(run())
    assert first == second


def test_openai_sdk_errors_map_to_its_exceptions(llm, sdk):
    server, _ = llm
    client = sdk(server.url + "/v1", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="tiny", n=0, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}])
    assert refused.value.response.json()["detail"]["msg"].startswith("`messages[0].content[0]`")


def test_models_list_the_llm_functions(llm, tiny_chat, sdk):
    server, client = llm
    for path in ("/v1/models", "/llm/models"):
        body = client.get(path).json()
        assert body["object"] == "list"
        assert [(m["id"], m["state"]) for m in body["data"] if m["pipeline"] == "llm"] == [(tiny_chat, "cold")]
    models = sdk(server.url + "/v1").models.list()  # the embeddings pipeline's default function too
    assert [m.id for m in models if m.pipeline == "llm"] == [tiny_chat]


def test_client_leaving_mid_stream_stops_generation_and_frees_the_slot(warmgate_server, tiny_chat):
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, max_concurrency=1)
    server, client = warmgate_server(Settings(functions=[config]))
    body = {"messages": [{"role": "user", "content": "go on"}], "max_tokens": 480, "stream": True}
    with httpx.Client(base_url=server.url, timeout=30) as leaving:
        with leaving.stream("POST", "/llm", json=body) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: "))  # generation is running
    deadline = time.monotonic() + 20
    while client.get("/functions").json()["functions"][0]["in_flight"]:
        assert time.monotonic() < deadline, "the slot was not freed"
        time.sleep(0.05)
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "next"}], "max_tokens": 3})
    assert r.status_code == 200  # the single slot serves the next request


class FlakyBackend:
    """Fails after its first delta, to show how a broken stream ends."""

    context_length = None

    def count_prompt_tokens(self, messages):
        return None

    async def generate(self, params):
        yield Delta(text="partial")
        raise RuntimeError("GPU fell off the bus")

    async def close(self):
        """Nothing to release."""


class FlakyBackendPlugin:
    @warmgate.hookimpl
    def register_llm_backends(self, register):
        register("flaky", lambda model_id, options: FlakyBackend())


def test_hook_register_llm_backends_and_a_stream_failure_ends_with_an_error_event(register_plugin, warmgate_server, sdk):
    register_plugin(FlakyBackendPlugin(), "undo-flaky")
    config = FunctionConfig(pipeline="llm", model_id="flaky/model", options={"backend": "flaky"})
    server, client = warmgate_server(Settings(functions=[config]))
    with client.stream("POST", "/llm", json={"messages": [{"role": "user", "content": "x"}], "stream": True}) as r:
        lines = list(r.iter_lines())
    assert "event: error" in lines
    error = json.loads(_sse_data(lines)[-1])
    assert "GPU fell off the bus" in error["detail"]["msg"]
    client_sdk = sdk(server.url + "/v1", max_retries=0)
    with pytest.raises(openai.APIError, match="GPU fell off the bus"):
        list(client_sdk.chat.completions.create(model="", messages=[{"role": "user", "content": "x"}], stream=True))
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 500 and "GPU fell off the bus" in r.json()["detail"]["msg"]


def test_unknown_backend_fails_the_load_with_the_reason(warmgate_server):
    config = FunctionConfig(pipeline="llm", model_id="m", options={"backend": "nope"})
    _, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503 and "unknown LLM backend 'nope'" in r.json()["detail"]["msg"]


@pytest.mark.parametrize(("chunks", "stops", "text"), [
    (["hello wor", "ld. bye"], ["world"], "hello "),
    (["a", "b", "<", "|e", "nd|>", "tail"], ["<|end|>"], "ab"),
    (["no stop here"], ["zzz"], "no stop here"),
    (["abc"], [], "abc"),
])
def test_stop_sequences_are_cut_even_across_deltas(chunks, stops, text):
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(c) for c in chunks) + scanner.flush()
    assert out == text


def test_demo_profile_serves_a_tiny_chat_model_and_a_tiny_vlm_under_their_demo_names(warmgate_server, tmp_path, sdk):
    settings = Settings(profile="demo", gateway=warmgate.core.settings.GatewaySettings(cache_dir=str(tmp_path)))
    specs = get_pipelines()
    server, client = warmgate_server(settings, pipelines={name: specs[name] for name in ("llm", "chat-completions")})
    functions = {f["model_id"]: f for f in client.get("/functions").json()["functions"]}
    assert {model: (f["demo"], f["state"]) for model, f in functions.items()} == {
        "warmgate-demo/tiny-chat": (True, "cold"), "warmgate-demo/tiny-vision-chat": (True, "cold")}  # loaded on use
    openai_sdk = sdk(server.url + "/v1")
    assert {m.id for m in openai_sdk.models.list()} == set(functions)
    completion = openai_sdk.chat.completions.create(model="warmgate-demo/tiny-chat", max_tokens=3,
                                                    messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "warmgate-demo/tiny-chat"
    assert (tmp_path / "demo" / "warmgate-demo--tiny-chat" / "config.json").is_file()
    assert not (tmp_path / "demo" / "warmgate-demo--tiny-vision-chat").exists()  # built on its first request
    png = base64.b64encode(_one_pixel_png()).decode()
    ask = [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}]
    seen = openai_sdk.chat.completions.create(model="warmgate-demo/tiny-vision-chat", max_tokens=3, messages=ask)
    assert seen.model == "warmgate-demo/tiny-vision-chat" and seen.usage.prompt_tokens > 16  # the image's tokens
    streamed = list(openai_sdk.chat.completions.create(model="warmgate-demo/tiny-vision-chat", max_tokens=3,
                                                       messages=ask, stream=True))
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError) as refused:  # the text-only demo model names itself
        openai_sdk.chat.completions.create(model="warmgate-demo/tiny-chat", max_tokens=3, messages=ask)
    message = refused.value.response.json()["detail"]["msg"]
    assert message.startswith("`messages[0].content[1]`") and "warmgate-demo/tiny-chat" in message


def _one_pixel_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_llm_requests_are_quoted_by_max_tokens(warmgate_server, tiny_chat):
    from warmgate.core.settings import Price

    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, price=Price(price_per_unit=1000))
    server, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 12})
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == ("12", "12000")
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    with client.stream("POST", "/llm", json=body) as streamed:
        assert (streamed.headers["x-warmgate-units"], streamed.headers["x-warmgate-price"]) == ("4", "4000")
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert (chat.headers["x-warmgate-units"], chat.headers["x-warmgate-price"]) == ("256", "256000")  # default
    chat = client.post("/llm/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                       "max_tokens": 9, "max_completion_tokens": 3})
    assert chat.headers["x-warmgate-units"] == "3"


def test_actual_token_usage_is_on_the_access_log_line_beside_the_quote(llm, capfd):
    _, client = llm
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6},
                    headers={"X-Request-Id": "usage-1"})
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}
    streamed = client.post("/v1/chat/completions", json=body, headers={"X-Request-Id": "usage-2"})
    lines = {}

    def logged():
        for line in capfd.readouterr().err.splitlines():
            if line.startswith("{") and '"event":"request"' in line:
                entry = json.loads(line)
                lines[entry["request_id"]] = entry
        return {"usage-1", "usage-2"} <= set(lines)

    assert wait_for(logged)
    usage = r.json()["usage"]
    first = lines["usage-1"]["llm"]
    assert first["quoted_tokens"] == 6
    assert (first["prompt_tokens"], first["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    final = json.loads(_sse_data(streamed.text.splitlines())[-2])["usage"]
    second = lines["usage-2"]["llm"]
    assert (second["quoted_tokens"], second["completion_tokens"]) == (5, final["completion_tokens"])
    assert lines["usage-2"]["path"] == "/v1/chat/completions" and lines["usage-2"]["status"] == 200


def test_the_ledger_records_quoted_and_actual_tokens_of_a_stream(warmgate_server, tiny_chat, tmp_path):
    from warmgate.core.settings import Price
    from warmgate.plugins.pricing.settings import PricingSettings

    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, price=Price(price_per_unit=1000))
    _, client = warmgate_server(Settings(functions=[config], sections=[PricingSettings(ledger=str(tmp_path / "u.db"))]))
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}
    streamed = client.post("/v1/chat/completions", json=body)
    final = json.loads(_sse_data(streamed.text.splitlines())[-2])["usage"]
    [total] = client.get("/usage").json()["usage"]
    assert (total["units"], total["wei"]) == (5, "5000")  # billed at max_tokens, as Livepeer does
    assert (total["prompt_tokens"], total["completion_tokens"]) == (final["prompt_tokens"], final["completion_tokens"])


def test_settle_usage_bills_completion_tokens_and_releases_the_rest_of_the_hold(warmgate_server, tiny_chat, tmp_path):
    """With ``price.settle: usage`` a call costs the tokens it produced, streamed or not: the
    second call below fits the balance only because the first one's unused hold came back."""
    from warmgate.core.settings import AuthSettings, Price
    from warmgate.plugins.pricing.keys import KeyStore
    from warmgate.plugins.pricing.settings import PricingSettings

    ledger = tmp_path / "usage.sqlite"
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, price=Price(price_per_unit=1000, settle="usage"))
    settings = Settings(functions=[config], auth=AuthSettings(keys=True, api_keys=["operator"]),
                        sections=[PricingSettings(ledger=str(ledger))])
    _, client = warmgate_server(settings)
    store = KeyStore(ledger)
    record, token = store.create(credit=25_000)  # one quote of 20 tokens, not two
    store.close()
    greedy = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "temperature": 0}
    operator = {"Authorization": "Bearer operator"}
    text = client.post("/v1/chat/completions", json=greedy, headers=operator).json()["choices"][0]["message"]["content"]
    early = {**greedy, "stop": [text[len(text) // 3:len(text) // 3 + 3]]}  # greedy again: it stops a third of the way

    keyed = {"Authorization": f"Bearer {token}"}
    first = client.post("/v1/chat/completions", json=early, headers=keyed)
    assert first.status_code == 200 and first.headers["x-warmgate-price"] == "20000"  # quoted by max_tokens
    used_first = first.json()["usage"]["completion_tokens"]
    streamed = client.post("/v1/chat/completions", headers=keyed,
                           json={**early, "stream": True, "stream_options": {"include_usage": True}})
    assert streamed.status_code == 200, streamed.text
    used_stream = json.loads(_sse_data(streamed.text.splitlines())[-2])["usage"]["completion_tokens"]
    assert used_first < 20 and used_stream < 20

    report = client.get("/usage", headers=keyed).json()
    [total] = report["usage"]
    billed = 1000 * (used_first + used_stream)
    assert (total["units"], total["wei"], total["completion_tokens"]) == (used_first + used_stream, str(billed),
                                                                        used_first + used_stream)
    assert report["balance"]["available_wei"] == str(25_000 - billed) and report["balance"]["held_wei"] == "0"
