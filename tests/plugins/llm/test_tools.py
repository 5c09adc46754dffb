"""Tool calling through the openai SDK on the backends that have it: the vLLM relay (a real
engine process speaking OpenAI's wire, ``openai_upstream.py``) and Ollama (the fake that speaks
its protocol). Streamed calls are assembled by the SDK's ``chat.completions.stream()`` helper."""

import json

import httpx
import openai
import pytest

from warmgate import FunctionConfig, Settings

from .fake_ollama import FakeModel, run_fake_ollama
from .openai_upstream import run_upstream

OLLAMA_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                                       "required": ["zone"]}}}
ASK = [{"role": "user", "content": "Paris"}]


@pytest.fixture(scope="module")
def engines():
    with run_upstream("org/relayed") as upstream, run_fake_ollama(local=[FakeModel(name="llama3.1:8b")]) as ollama:
        yield upstream, ollama


@pytest.fixture
def sdk(warmgate_server, engines):
    upstream, ollama = engines
    functions = [FunctionConfig(pipeline="llm", model_id="org/relayed", options={"backend": "vllm", "url": upstream.url}),
                 FunctionConfig(pipeline="llm", model_id=OLLAMA_MODEL, options={"backend": "ollama", "host": ollama.url})]
    server, _ = warmgate_server(Settings(functions=functions))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


# what each engine calls for ASK: the relay's engine sets every required argument to "v", the fake
# Ollama calls the first tool with the user's text
EXPECTED = {"org/relayed": {"city": "v"}, OLLAMA_MODEL: {"city": "Paris"}}


@pytest.mark.parametrize("model", ["org/relayed", OLLAMA_MODEL])
def test_a_tool_call_comes_back_as_message_tool_calls(sdk, model):
    completion = sdk.chat.completions.create(model=model, messages=ASK, tools=[WEATHER], max_tokens=50)
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith(("call_", "chatcmpl-tool-"))
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == EXPECTED[model]


@pytest.mark.parametrize("model", ["org/relayed", OLLAMA_MODEL])
def test_streamed_tool_calls_are_assembled_by_the_sdks_stream_helper(sdk, model):
    with sdk.chat.completions.stream(model=model, messages=ASK, tools=[WEATHER], max_tokens=50) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    [choice] = final.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == EXPECTED[model]
    assert call.id


def test_the_relay_honours_a_named_tool_choice_and_parallel_calls(sdk, engines):
    upstream, _ = engines
    named = {"type": "function", "function": {"name": "get_time"}}
    completion = sdk.chat.completions.create(model="org/relayed", messages=ASK, tools=[WEATHER, TIME],
                                             tool_choice=named, max_tokens=50)
    assert [c.function.name for c in completion.choices[0].message.tool_calls] == ["get_time"]
    assert httpx.get(upstream.url + "/last").json()["tool_choice"] == named
    both = sdk.chat.completions.create(model="org/relayed", messages=ASK, tools=[WEATHER, TIME], max_tokens=50)
    assert [c.function.name for c in both.choices[0].message.tool_calls] == ["get_weather", "get_time"]
    for stream in (False, True):  # parallel_tool_calls: false keeps the first call only
        answer = sdk.chat.completions.create(model="org/relayed", messages=ASK, tools=[WEATHER, TIME], max_tokens=50,
                                             parallel_tool_calls=False, stream=stream)
        if stream:
            names = {c.function.name for chunk in answer for c in (chunk.choices[0].delta.tool_calls or [])
                     if c.function and c.function.name}
        else:
            names = {c.function.name for c in answer.choices[0].message.tool_calls}
        assert names == {"get_weather"}
    assert httpx.get(upstream.url + "/last").json()["parallel_tool_calls"] is False


@pytest.mark.parametrize("model", ["org/relayed", OLLAMA_MODEL])
def test_a_follow_up_turn_carries_the_call_and_its_result(sdk, engines, model):
    upstream, ollama = engines
    first = sdk.chat.completions.create(model=model, messages=ASK, tools=[WEATHER], max_tokens=50)
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny and warm"}]
    answer = sdk.chat.completions.create(model=model, messages=history, tools=[WEATHER], max_tokens=50)
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    if model == "org/relayed":
        sent = httpx.get(upstream.url + "/last").json()["messages"]
        assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2]["tool_call_id"] == call.id
    else:
        assert answer.choices[0].message.content == "sunny and warm"  # the fake answers with the tool's words
        sent = ollama.chats[-1].body["messages"]
        assert sent[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
        assert (sent[2]["role"], sent[2]["tool_name"], sent[2]["content"]) == ("tool", "get_weather", "sunny and warm")


def test_tool_choice_none_sends_ollama_no_tools(sdk, engines):
    _, ollama = engines
    answer = sdk.chat.completions.create(model=OLLAMA_MODEL, messages=ASK, tools=[WEATHER], tool_choice="none",
                                         max_tokens=5)
    assert answer.choices[0].message.content == "Paris" and not answer.choices[0].message.tool_calls
    assert not ollama.chats[-1].body.get("tools")
