"""The Ollama API served by warmgate, through the official ``ollama`` client pointed at it: the
tiny local chat and embedding models, an Ollama-backed function (the fake that speaks Ollama's
protocol) for structured output and pulls, and the vLLM relay (a real engine process speaking
OpenAI's wire) for tool calls."""

import datetime
import json

import httpx
import jsonschema
import ollama
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import Price
from warmgate.plugins.llm.embeddings.demo import HIDDEN_SIZE
from warmgate.testing import wait_for

from .fake_ollama import FakeModel, run_fake_ollama
from .openai_upstream import run_upstream

OLLAMA_BACKED = "meta-llama/Meta-Llama-3.1-8B-Instruct"  # its Ollama name is llama3.1:8b
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "three days in Paris"}]
SHORT = {"num_predict": 3}


@pytest.fixture(scope="module")
def engines():
    with run_upstream("org/relayed") as upstream, run_fake_ollama(library=[FakeModel(name="llama3.1:8b")]) as fake:
        yield upstream, fake


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dir):
    pipelines = get_pipelines()
    return str(tiny_model_dir(pipelines["llm"])), str(tiny_model_dir(pipelines["embeddings"]))


@pytest.fixture
def gateway(warmgate_server, tiny_models, engines):
    """An ``ollama.Client`` on a gateway with every kind of function, and an httpx client."""
    upstream, fake = engines
    chat, embed = tiny_models
    functions = [
        FunctionConfig(pipeline="llm", model_id=chat, aliases=["tiny"], price=Price(price_per_unit=1000)),
        FunctionConfig(pipeline="embeddings", model_id=embed, aliases=["tiny-embed"]),
        FunctionConfig(pipeline="llm", model_id=OLLAMA_BACKED, options={"backend": "ollama", "host": fake.url}),
        FunctionConfig(pipeline="llm", model_id="org/relayed", options={"backend": "vllm", "url": upstream.url}),
    ]
    server, client = warmgate_server(Settings(functions=functions))
    sdk = ollama.Client(host=server.url)
    yield sdk, client
    sdk.close()


def _state(client, model_id):
    return next(f["state"] for f in client.get("/functions").json()["functions"] if f["model_id"] == model_id)


def test_chat_answers_with_ollamas_counts_and_durations(gateway, tiny_models):
    sdk, _ = gateway
    answer = sdk.chat(model="tiny", messages=ASK, options=SHORT, stream=False)
    assert answer.done and answer.done_reason == "length" and answer.message.role == "assistant"
    assert isinstance(answer.message.content, str)
    assert answer.eval_count == 3 and answer.prompt_eval_count > 0
    assert answer.total_duration >= answer.load_duration + answer.eval_duration > 0


def test_chat_streams_ndjson_by_default(gateway):
    sdk, client = gateway
    parts = list(sdk.chat(model="tiny", messages=ASK, options=SHORT, stream=True))
    *pieces, last = parts
    assert pieces and not any(part.done for part in pieces)
    assert last.done and last.done_reason == "length" and last.eval_count == 3
    r = client.post("/api/chat", json={"model": "tiny", "messages": ASK, "options": SHORT})  # no "stream"
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["done"] for line in lines][-1] is True and len(lines) > 1


def test_generate_takes_a_prompt_and_a_system(gateway):
    sdk, _ = gateway
    answer = sdk.generate(model="tiny", prompt="hello", system="Be brief.", options=SHORT)
    assert answer.done and isinstance(answer.response, str) and answer.eval_count == 3
    streamed = list(sdk.generate(model="tiny", prompt="hello", options=SHORT, stream=True))
    assert streamed[-1].done and not streamed[0].done


def test_generate_raw_sends_the_prompt_without_the_chat_template(gateway):
    sdk, _ = gateway
    templated = sdk.generate(model="tiny", prompt="hello there", options=SHORT)
    raw = sdk.generate(model="tiny", prompt="hello there", raw=True, options=SHORT)
    assert raw.done and isinstance(raw.response, str) and raw.eval_count == 3
    assert 0 < raw.prompt_eval_count < templated.prompt_eval_count  # no role markers around it


def test_list_show_and_ps_describe_the_functions(gateway, tiny_models):
    sdk, _ = gateway
    chat, embed = tiny_models
    assert {chat, embed, OLLAMA_BACKED, "org/relayed"} <= {m.model for m in sdk.list().models}
    shown = sdk.show("tiny")
    assert shown.modelinfo["llm.context_length"] == 4096 and "completion" in shown.capabilities
    assert shown.details.format == "safetensors"
    sdk.chat(model="tiny", messages=ASK, options=SHORT, keep_alive="1h", stream=False)
    [running] = [m for m in sdk.ps().models if m.model == chat]
    left = running.expires_at - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=50) < left <= datetime.timedelta(hours=1)
    assert running.context_length == 4096


def test_keep_alive_zero_unloads_the_function_once_its_request_ended(gateway, tiny_models):
    sdk, client = gateway
    chat, _ = tiny_models
    sdk.chat(model="tiny", messages=ASK, options=SHORT, stream=False)
    assert _state(client, chat) in ("idle", "warm")
    sdk.chat(model="tiny", messages=ASK, options=SHORT, keep_alive=0, stream=False)
    assert wait_for(lambda: _state(client, chat) == "cold", timeout=30)
    assert chat not in {m.model for m in sdk.ps().models}


def test_a_keep_alive_duration_replaces_the_idle_timeout(gateway, tiny_models):
    sdk, client = gateway
    chat, _ = tiny_models
    sdk.chat(model="tiny", messages=ASK, options=SHORT, keep_alive="1s", stream=False)  # idle_timeout is 300 s
    assert wait_for(lambda: _state(client, chat) == "cold", timeout=30)


def test_an_empty_generate_loads_the_model(gateway, tiny_models):
    sdk, client = gateway
    chat, _ = tiny_models
    assert sdk.generate(model="tiny", prompt="").done_reason == "load"
    assert _state(client, chat) in ("idle", "warm")


def test_embed_and_the_older_embeddings_use_the_embeddings_function(gateway):
    sdk, _ = gateway
    answer = sdk.embed(model="tiny-embed", input=["a cat", "a dog"])
    assert len(answer.embeddings) == 2 and all(len(v) == HIDDEN_SIZE for v in answer.embeddings)
    assert answer.prompt_eval_count > 0
    single = sdk.embeddings(model="tiny-embed", prompt="a cat")
    assert single.embedding == pytest.approx(answer.embeddings[0], abs=1e-5)


@pytest.mark.parametrize("stream", [False, True])
def test_a_json_schema_format_answers_json_that_validates(gateway, engines, stream):
    sdk, _ = gateway
    _, fake = engines
    ask = dict(model="llama3.1:8b", messages=ASK, format=SCHEMA, stream=stream)  # named by its Ollama name
    if stream:
        content = "".join(part.message.content or "" for part in sdk.chat(**ask))
    else:
        content = sdk.chat(**ask).message.content
    jsonschema.validate(json.loads(content), SCHEMA)
    assert fake.requests("/api/chat")[-1]["format"] == SCHEMA


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_come_back_whole_and_their_results_go_to_the_engine(gateway, engines, stream):
    sdk, _ = gateway
    upstream, _ = engines
    if stream:
        parts = list(sdk.chat(model="org/relayed", messages=ASK, tools=[WEATHER], stream=True))
        [call] = [c for part in parts for c in part.message.tool_calls or ()]
    else:
        [call] = sdk.chat(model="org/relayed", messages=ASK, tools=[WEATHER], stream=False).message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "v"}
    turns = [*ASK, {"role": "assistant", "content": "", "tool_calls": [call]},
             {"role": "tool", "content": "18 C", "tool_name": "get_weather"}]
    sdk.chat(model="org/relayed", messages=turns, tools=[WEATHER], options=SHORT, stream=False)
    sent = httpx.get(upstream.url + "/last").json()["messages"]
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"] and sent[2]["content"] == "18 C"


def test_pull_goes_to_the_engine_of_an_ollama_backed_function(gateway, engines):
    sdk, _ = gateway
    _, fake = engines
    statuses = [p.status for p in sdk.pull("llama3.1:8b", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert fake.requests("/api/pull")[-1]["model"] == "llama3.1:8b"


def test_pull_loads_any_other_function(gateway, tiny_models):
    sdk, client = gateway
    _, embed = tiny_models
    assert _state(client, embed) == "cold"
    assert [p.status for p in sdk.pull("tiny-embed", stream=True)][-1] == "success"
    assert _state(client, embed) in ("idle", "warm")
    with pytest.raises(ollama.ResponseError) as unknown:
        sdk.pull("nope")
    assert unknown.value.status_code == 404


def test_version_answers(gateway):
    _, client = gateway
    assert client.get("/api/version").json()["version"].count(".") == 2


@pytest.mark.parametrize("path, body, status, where", [
    ("/api/chat", {"model": "tiny", "messages": ASK, "options": {"num_predict": 0}}, 400, "num_predict"),
    ("/api/chat", {"model": "nope", "messages": ASK}, 404, "nope"),
    ("/api/generate", {"model": "tiny", "prompt": "hi", "template": "{{ .Prompt }}"}, 400, "template"),
    ("/api/generate", {"model": "tiny", "prompt": "hi", "raw": True, "images": ["AA=="]}, 400, "images"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "keep_alive": "soon"}, 400, "keep_alive"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "tool", "content": "18 C"}]}, 400, "tool"),
    ("/api/embed", {"model": "nope", "input": "hi"}, 404, "nope"),
    ("/api/show", {"model": "nope"}, 404, "nope"),
])
def test_bad_input_is_a_4xx_in_ollamas_shape(gateway, path, body, status, where):
    _, client = gateway
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and where in r.json()["error"]


def test_the_client_raises_ollamas_response_error(gateway):
    sdk, _ = gateway
    with pytest.raises(ollama.ResponseError) as bad:
        sdk.chat(model="tiny", messages=ASK, options={"num_predict": 0}, stream=False)
    assert bad.value.status_code == 400 and "num_predict" in bad.value.error


def test_a_priced_chat_carries_the_quote_headers(gateway):
    _, client = gateway
    r = client.post("/api/chat", json={"model": "tiny", "messages": ASK, "options": SHORT, "stream": False})
    assert r.status_code == 200
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == ("3", "3000")
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/chat", "/api/generate", "/api/embed", "/api/tags", "/api/ps", "/api/show", "/api/pull"} <= set(paths)
