"""One request model for every backend, driven by the openai SDK: what a backend cannot honour
is a 400 naming the field and the backend, never a silent drop; inert fields are accepted;
fields OpenAI does not define reach an OpenAI-compatible engine verbatim and are refused by the
others; inconsistent requests are 422s naming the field, whatever the backend."""

import json

import httpx
import openai
import pytest

from warmgate import FunctionConfig, Settings

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
# a 1x1 PNG: every backend decodes an image before its engine sees it, so a relayed one must be real
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1Pe"
                                                  "AAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC"}}
INERT = {"user": "u-1", "metadata": {"team": "a"}, "store": False, "service_tier": "auto",
         "prompt_cache_key": "k", "safety_identifier": "s-1"}

# each request needs one feature; (feature kwargs, the field the 400 must name)
NEEDS = {
    "tools": ({"tools": [WEATHER]}, "`tools`"),
    "tool_choice": ({"tools": [WEATHER], "tool_choice": "required"}, "`tool_choice`"),
    "tool_history": ({"messages": [*HI, {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}, "`messages[1].tool_calls`"),
    "json_object": ({"response_format": {"type": "json_object"}}, "`response_format`"),
    "logprobs": ({"logprobs": True, "top_logprobs": 2}, "`logprobs`"),
    "presence_penalty": ({"presence_penalty": 0.5}, "`presence_penalty`"),
    "logit_bias": ({"logit_bias": {"42": -100}}, "`logit_bias`"),
    "image": ({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it"}, IMAGE]}]},
              "`messages[0].content[1]`"),
    "audio": ({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]}, "`messages[0].content[0]`"),
}
UNSUPPORTED = {
    "transformers": ["image", "audio"],
    "ollama": ["tool_choice", "logit_bias", "audio"],
    "vllm": ["audio"],
}


@pytest.fixture
def gateway(warmgate_server, tiny_chat, engines):
    """One gateway with a function on each backend; ``gateway[backend]`` is its model id."""
    upstream, ollama = engines
    functions = [
        FunctionConfig(pipeline="llm", model_id=tiny_chat),
        FunctionConfig(pipeline="llm", model_id="org/relayed", options={"backend": "vllm", "url": upstream.url}),
        FunctionConfig(pipeline="llm", model_id="meta-llama/Meta-Llama-3.1-8B-Instruct",
                       options={"backend": "ollama", "host": ollama.url}),
    ]
    server, client = warmgate_server(Settings(functions=functions))
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    yield sdk, {"transformers": tiny_chat, "vllm": "org/relayed", "ollama": functions[2].model_id}
    sdk.close()


def _create(sdk, model, **body):
    body.setdefault("messages", HI)
    extra = body.pop("extra_body", None)
    return sdk.chat.completions.create(model=model, max_tokens=4, extra_body=extra, **body)


@pytest.mark.parametrize("backend", ["transformers", "vllm", "ollama"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_field_the_backend_cannot_honour_is_a_400_naming_it_and_the_backend(gateway, backend, stream):
    sdk, models = gateway
    for need in UNSUPPORTED[backend]:
        body, field = NEEDS[need]
        with pytest.raises(openai.BadRequestError) as refused:
            _create(sdk, models[backend], stream=stream, **body)
        message = refused.value.response.json()["detail"]["msg"]
        assert message.startswith(field) and f"the {backend} backend serving {models[backend]}" in message, need


@pytest.mark.parametrize("backend", ["transformers", "vllm", "ollama"])
def test_inert_fields_are_accepted_on_every_backend(gateway, backend):
    sdk, models = gateway
    answer = _create(sdk, models[backend], extra_body=None, **INERT)
    assert answer.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("backend", ["transformers", "ollama"])
def test_fields_openai_does_not_define_are_refused_by_backends_that_cannot_relay_them(gateway, backend):
    sdk, models = gateway
    with pytest.raises(openai.BadRequestError) as refused:
        _create(sdk, models[backend], extra_body={"min_p": 0.1, "repetition_penalty": 1.1})
    message = refused.value.response.json()["detail"]["msg"]
    listed = "`min_p`:" if backend == "transformers" else "`min_p`, `repetition_penalty`:"  # it has that one
    assert message.startswith(f"unknown fields {listed}") and f"the {backend} backend" in message


def test_the_relay_forwards_what_it_supports_and_unknown_fields_verbatim(gateway, engines):
    sdk, models = gateway
    upstream, _ = engines
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    content = [{"type": "text", "text": "what is it"}, IMAGE]
    extras = {"min_p": 0.05, "repetition_penalty": 1.1, "chat_template_kwargs": {"enable_thinking": False}}
    answer = _create(sdk, models["vllm"], messages=[{"role": "developer", "content": "be brief"},
                                                    {"role": "user", "content": content}],
                     seed=0, presence_penalty=0.5, frequency_penalty=-0.5, logit_bias={"42": -100}, stop=["x"],
                     response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
                     extra_body=extras, **INERT)
    assert json.loads(answer.choices[0].message.content) == {"a": 1}  # the engine honoured the schema
    sent = httpx.get(upstream.url + "/last").json()
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]
    assert {k: sent[k] for k in extras} == extras
    assert (sent["seed"], sent["presence_penalty"], sent["frequency_penalty"], sent["logit_bias"], sent["stop"]) == (
        0, 0.5, -0.5, {"42": -100}, ["x"])
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    assert not set(INERT) & set(sent)  # inert: not forwarded either
    assert sent["model"] == "org/relayed" and sent["max_tokens"] == 4


def test_ollama_gets_the_penalties_as_options(gateway, engines):
    sdk, models = gateway
    _, ollama = engines
    _create(sdk, models["ollama"], presence_penalty=0.5, frequency_penalty=0.25, seed=3)
    options = ollama.chats[-1].body["options"]
    assert (options["presence_penalty"], options["frequency_penalty"], options["seed"]) == (0.5, 0.25, 3)


BAD = [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "banana"}}}]},
     ["body", "tools", 0, "function", "parameters"]),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
     ["body", "tool_choice", "function", "name"]),
    ({"tool_choice": "required"}, ["body", "tool_choice"]),
    ({"messages": [*HI, {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}]},
     ["body", "messages", 1, "tool_call_id"]),
    ({"top_logprobs": 21, "logprobs": True}, ["body", "top_logprobs"]),
    ({"top_logprobs": 2}, ["body", "top_logprobs"]),
    ({"n": 0}, ["body", "n"]),
    ({"response_format": {"type": "xml"}}, ["body", "response_format", "type"]),
]


@pytest.mark.parametrize("backend", ["transformers", "vllm", "ollama"])
def test_inconsistent_requests_are_422s_naming_the_field_on_every_backend(gateway, backend):
    sdk, models = gateway
    for body, loc in BAD:
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            _create(sdk, models[backend], **body)
        [error] = refused.value.response.json()["detail"]
        assert error["loc"] == loc, (body, error)


@pytest.mark.parametrize("stream", [False, True])
def test_the_relay_passes_logprobs_through_in_the_openai_shape(gateway, engines, stream):
    sdk, models = gateway
    upstream, _ = engines
    answer = _create(sdk, models["vllm"], logprobs=True, top_logprobs=2, stream=stream)
    if stream:
        entries = [e for c in answer if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    else:
        entries = answer.choices[0].logprobs.content
    assert [(e.token, e.logprob, bytes(e.bytes).decode()) for e in entries] == [
        (f" t{i}", -0.5 - i / 10, f" t{i}") for i in range(4)]
    assert all([top.token for top in e.top_logprobs] == [" c0", " c1"] for e in entries)
    sent = httpx.get(upstream.url + "/last").json()
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
