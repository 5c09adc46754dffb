"""The Anthropic Messages API through the official ``anthropic`` SDK, unchanged: the tiny local
chat model on the transformers backend, and the vLLM relay (a real engine process speaking
OpenAI's wire, ``openai_upstream.py``) for tool use and stop sequences, which it answers."""

import anthropic
import httpx
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import AuthSettings, Price

from .openai_upstream import ANSWER_WORDS, run_upstream

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK = [{"role": "user", "content": "Paris"}]


@pytest.fixture(scope="module")
def upstream():
    with run_upstream("org/relayed") as engine:
        yield engine


@pytest.fixture(scope="session")
def tiny_chat(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["llm"]))


@pytest.fixture
def gateway(warmgate_server, tiny_chat, upstream):
    """The tiny model (priced, alias ``tiny``) and the relay; an SDK client for it."""
    functions = [FunctionConfig(pipeline="llm", model_id=tiny_chat, aliases=["tiny"],
                                price=Price(price_per_unit=1000)),
                 FunctionConfig(pipeline="llm", model_id="org/relayed", options={"backend": "vllm", "url": upstream.url})]
    server, client = warmgate_server(Settings(functions=functions))
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0) as sdk:
        yield sdk, client


def test_messages_create_answers_a_message_with_usage_and_the_gateway_headers(gateway):
    sdk, _ = gateway
    raw = sdk.messages.with_raw_response.create(model="tiny", max_tokens=4, system="Be brief.",
                                                messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [block.type for block in message.content] in (["text"], [])
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 4
    assert raw.headers["x-warmgate-units"] == "4"  # quoted at max_tokens, as every LLM route
    assert int(raw.headers["x-warmgate-price"]) == 4000
    assert "x-warmgate-overhead-ms" in raw.headers


def test_messages_stream_sends_the_event_sequence_the_sdk_assembles(gateway):
    sdk, _ = gateway
    with sdk.messages.stream(model="tiny", max_tokens=3, messages=ASK) as stream:
        events = list(stream)
        message = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text == "".join(event.text for event in events if event.type == "text")
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    assert message.usage.input_tokens > 0


def test_the_raw_stream_has_ping_blocks_and_deltas(gateway):
    _, client = gateway
    body = {"model": "org/relayed", "max_tokens": 4, "stream": True, "messages": ASK}
    lines = client.post("/v1/messages", json=body).text.splitlines()
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events == ["message_start", "ping", "content_block_start", *["content_block_delta"] * 4,
                      "content_block_stop", "message_delta", "message_stop"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_sequence_is_named_in_stop_reason(gateway, stream):
    sdk, _ = gateway
    ask = dict(model="org/relayed", max_tokens=16, stop_sequences=[" t3"], messages=ASK)
    if stream:
        with sdk.messages.stream(**ask) as events:
            message = events.get_final_message()
    else:
        message = sdk.messages.create(**ask)
    assert message.content[0].text == " t0 t1 t2"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " t3")
    natural = sdk.messages.create(model="org/relayed", max_tokens=16, messages=ASK)
    assert natural.stop_reason == "end_turn" and natural.usage.output_tokens == ANSWER_WORDS


def test_a_streamed_tool_use_is_assembled_by_the_sdk(gateway):
    sdk, _ = gateway
    with sdk.messages.stream(model="org/relayed", max_tokens=64, tools=[WEATHER], messages=ASK) as stream:
        kinds = {event.type for event in stream}
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "v"}
    assert "input_json" in kinds  # the SDK's event for each input_json_delta


def test_a_tool_use_and_its_result_make_a_multi_turn_exchange(gateway, upstream):
    sdk, _ = gateway
    first = sdk.messages.create(model="org/relayed", max_tokens=64, tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather"}, messages=ASK)
    [call] = first.content
    assert first.stop_reason == "tool_use" and call.input == {"city": "v"}
    sent = httpx.get(upstream.url + "/last").json()
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    turns = [*ASK, {"role": "assistant", "content": first.content},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}]}]
    second = sdk.messages.create(model="org/relayed", max_tokens=4, tools=[WEATHER], messages=turns)
    assert second.stop_reason == "max_tokens" and second.content[0].type == "text"
    messages = httpx.get(upstream.url + "/last").json()["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.id
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2] == {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"}


def test_count_tokens_counts_with_the_functions_tokenizer(gateway):
    sdk, _ = gateway
    short = sdk.messages.count_tokens(model="tiny", messages=ASK)
    longer = sdk.messages.count_tokens(model="tiny", system="You answer in French, always.", messages=ASK)
    with_tools = sdk.messages.count_tokens(model="tiny", messages=ASK, tools=[WEATHER])
    assert 0 < short.input_tokens < longer.input_tokens
    assert with_tools.input_tokens > short.input_tokens + 20  # the template renders the tool's definition


def test_errors_are_the_sdks_typed_errors_in_anthropics_shape(gateway):
    sdk, client = gateway
    with pytest.raises(anthropic.NotFoundError) as unknown:
        sdk.messages.create(model="nope", max_tokens=4, messages=ASK)
    assert unknown.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": []}],
                            tools=[{"name": "x", "input_schema": {"type": "nonsense"}}])
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("body, where", [
    ({"model": "tiny", "messages": ASK}, "max_tokens"),
    ({"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "document"}]}]}, "document"),
    ({"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64"}}]}]}, "media_type"),
    ({"model": "tiny", "max_tokens": 4, "messages": [{"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "x"}]}]}, "tool_result"),
    ({"model": "tiny", "max_tokens": 4, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": ASK},
     "thinking"),
])
def test_bad_input_is_a_400_in_anthropics_shape(gateway, body, where):
    _, client = gateway
    r = client.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert where in r.json()["error"]["message"]


def test_keys_are_accepted_as_x_api_key(warmgate_server, tiny_chat):
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, aliases=["tiny"])
    server, client = warmgate_server(Settings(functions=[config], auth=AuthSettings(api_keys=["sk-good"])))
    with anthropic.Anthropic(base_url=server.url, api_key="sk-good", max_retries=0) as sdk:
        assert sdk.messages.create(model="tiny", max_tokens=2, messages=ASK).type == "message"
    with anthropic.Anthropic(base_url=server.url, api_key="sk-bad", max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            sdk.messages.create(model="tiny", max_tokens=2, messages=ASK)
    assert refused.value.body["error"]["type"] == "authentication_error"
    r = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 2, "messages": ASK},
                    headers={"Authorization": "Bearer sk-good"})
    assert r.status_code == 200


def test_the_openapi_document_has_the_messages_routes(gateway):
    _, client = gateway
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/v1/messages"]["post"]["operationId"] == "createMessage"
    assert "404" in paths["/v1/messages"]["post"]["responses"]
    assert paths["/v1/messages/count_tokens"]["post"]["operationId"] == "countMessageTokens"


def test_keyed_calls_in_both_wire_formats_are_held_settled_by_usage_and_in_the_ledger(warmgate_server, tiny_chat,
                                                                                         tmp_path):
    import ollama

    from warmgate.plugins.pricing.keys import KeyStore
    from warmgate.plugins.pricing.settings import PricingSettings

    ledger = str(tmp_path / "usage.sqlite")
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, aliases=["tiny"],
                            price=Price(price_per_unit=1000, settle="usage"))
    server, client = warmgate_server(Settings(functions=[config], auth=AuthSettings(keys=True),
                                              sections=[PricingSettings(ledger=ledger)]))
    store = KeyStore(ledger)
    try:
        record, token = store.create(credit=10**6)
    finally:
        store.close()
    with anthropic.Anthropic(base_url=server.url, api_key=token, max_retries=0) as sdk:  # X-Api-Key
        message = sdk.messages.create(model="tiny", max_tokens=8, messages=ASK)
    with ollama.Client(host=server.url, headers={"Authorization": f"Bearer {token}"}) as sdk:
        chat = sdk.chat(model="tiny", messages=ASK, options={"num_predict": 8}, stream=False)
    with ollama.Client(host=server.url) as keyless, pytest.raises(ollama.ResponseError) as refused:
        keyless.chat(model="tiny", messages=ASK, stream=False)
    assert refused.value.status_code == 401
    report = client.get("/usage", headers={"Authorization": f"Bearer {token}"}).json()
    [row] = report["usage"]
    tokens = message.usage.output_tokens + chat.eval_count
    assert (row["key"], row["requests"], row["units"], row["wei"]) == (record.id, 2, tokens, str(1000 * tokens))
    assert row["prompt_tokens"] == message.usage.input_tokens + chat.prompt_eval_count
    assert report["balance"]["spent_wei"] == str(1000 * tokens)  # the quotes (8 tokens each) were held, then settled
