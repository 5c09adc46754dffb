"""Tools, structured output, logprobs, penalties and logit_bias on the in-process transformers
backend, through the openai SDK against a gateway serving the tiny random-weight demo model.
Its output is noise, so every assertion is on what constrained decoding and the processors
guarantee: JSON that validates, calls whose arguments match their schema, logprobs that add up,
a banned token that never appears."""

import collections
import json
import typing

import jsonschema
import openai
import pydantic
import pytest
from transformers import AutoTokenizer

from warmgate import FunctionConfig, Settings, create_app
from warmgate.core.plugins import get_pipelines
from warmgate.plugins.llm.grammar import lex
from warmgate.plugins.llm.tool_output import ForcedCallsStream, ToolCallSplitter, parse_calls, template_messages
from warmgate.testing.server import serve

ASK = [{"role": "user", "content": "three days in Paris"}]
FORECAST = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                             "days": {"type": "integer", "minimum": 1, "maximum": 14},
                                             "unit": {"enum": ["C", "F"]},
                                             "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
            "required": ["city", "days", "unit"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}, "hour24": {"type": "boolean"}},
                   "required": ["zone"]}}}
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (WEATHER, TIME)}


@pytest.fixture(scope="session")
def tiny_chat(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["llm"]))


@pytest.fixture(scope="module")
def gateway(tiny_chat):
    """One gateway for the module (each test's requests are independent)."""
    with serve(create_app(Settings(functions=[FunctionConfig(pipeline="llm", model_id=tiny_chat)]))) as server:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as sdk:
            yield sdk, tiny_chat


def _whitespace_outside_strings(text):
    state = (False, False)
    for char in text:
        if not state[0] and char.isspace():
            return True
        state = lex(state, char)
    return False


def _text(answer, stream):
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in answer if chunk.choices)
    return answer.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("max_tokens", [20, 40, 300])
def test_a_json_schema_answer_always_validates_even_when_the_budget_is_tight(gateway, stream, max_tokens):
    sdk, model = gateway
    for seed in range(3):
        answer = sdk.chat.completions.create(
            model=model, messages=ASK, max_tokens=max_tokens, seed=seed, stream=stream,
            response_format={"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST,
                                                                    "strict": True}})
        text = _text(answer, stream)
        if not stream:  # a document closed on the budget's last token is complete: not cut off
            assert answer.choices[0].finish_reason == "stop"
        assert not _whitespace_outside_strings(text)
        jsonschema.validate(json.loads(text), FORECAST)


class Forecast(pydantic.BaseModel):
    city: str
    days: int
    unit: typing.Literal["C", "F"]


def test_the_sdk_parses_a_pydantic_response_format(gateway):
    sdk, model = gateway
    answer = sdk.chat.completions.parse(model=model, messages=ASK, response_format=Forecast, max_tokens=40, seed=1)
    assert isinstance(answer.choices[0].message.parsed, Forecast)


HARD = [
    {"type": "object", "properties": {"items": {"type": "array", "minItems": 2, "items": {
        "type": "object", "properties": {"n": {"type": "number"}, "ok": {"type": "boolean"}}, "required": ["n", "ok"]}}},
     "required": ["items"]},
    {"type": "object", "properties": {"name": {"type": "string", "minLength": 3, "maxLength": 10},
                                      "kind": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
     "required": ["name", "kind"]},
    {"type": "array", "items": {"type": "string"}},
    {"type": "object", "properties": {"deep": {"type": "object", "properties": {"deeper": {
        "type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}, "required": ["deeper"]}},
     "required": ["deep"]},
    {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}}, "required": ["code"]},
]


@pytest.mark.parametrize("schema", HARD)
def test_every_budget_either_holds_a_valid_answer_or_is_refused_up_front(gateway, schema):
    sdk, model = gateway
    answered = 0
    for max_tokens in (8, 15, 25, 40, 80):
        for seed in range(2):
            try:
                answer = sdk.chat.completions.create(
                    model=model, messages=ASK, max_tokens=max_tokens, seed=seed,
                    response_format={"type": "json_schema", "json_schema": {"name": "hard", "schema": schema}})
            except openai.BadRequestError as refused:
                assert refused.response.json()["detail"]["msg"].startswith(f"`max_tokens`: {max_tokens} tokens")
                continue
            jsonschema.validate(json.loads(answer.choices[0].message.content), schema)
            answered += 1
    assert answered >= 4


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_answers_a_json_object(gateway, stream):
    sdk, model = gateway
    for max_tokens in (4, 60):
        answer = sdk.chat.completions.create(model=model, messages=ASK, max_tokens=max_tokens, stream=stream,
                                             response_format={"type": "json_object"})
        jsonschema.validate(json.loads(_text(answer, stream)), {"type": "object"})


def test_a_budget_that_holds_no_valid_answer_is_a_400(gateway):
    sdk, model = gateway
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=model, messages=ASK, max_tokens=3, response_format={
            "type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST}})
    assert refused.value.response.json()["detail"]["msg"].startswith("`max_tokens`: 3 tokens cannot hold")


def test_a_schema_that_cannot_be_compiled_is_a_400_with_the_reason(gateway):
    sdk, model = gateway
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=model, messages=ASK, max_tokens=20, response_format={
            "type": "json_schema", "json_schema": {"name": "broken", "schema": schema}})
    message = refused.value.response.json()["detail"]["msg"]
    assert message.startswith("`response_format.json_schema.schema`: cannot be compiled") and "missing" in message


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_makes_a_call_whose_arguments_match_its_schema(gateway, stream):
    sdk, model = gateway
    for seed in range(3):
        kwargs = dict(model=model, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=60,
                      seed=seed, parallel_tool_calls=False)
        if stream:
            with sdk.chat.completions.stream(**kwargs) as events:
                kinds = [event.type for event in events]
                final = events.get_final_completion()
            assert "tool_calls.function.arguments.done" in kinds
        else:
            final = sdk.chat.completions.create(**kwargs)
        [choice] = final.choices
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert call.id and call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


@pytest.mark.parametrize("stream", [False, True])
def test_a_named_tool_choice_calls_that_function(gateway, stream):
    sdk, model = gateway
    kwargs = dict(model=model, messages=ASK, tools=[WEATHER, TIME], max_tokens=40,
                  tool_choice={"type": "function", "function": {"name": "get_time"}})
    if stream:
        with sdk.chat.completions.stream(**kwargs) as events:
            final = events.get_final_completion()
    else:
        final = sdk.chat.completions.create(**kwargs)
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_time" and final.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["get_time"])


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_constrained_calls_stream_their_arguments_as_they_are_decoded(gateway, choice):
    """As OpenAI streams a call: its id, type and name first, then its arguments in fragments,
    chunk by chunk before the finish; the SDK's stream helper assembles them into valid calls."""
    sdk, model = gateway
    kwargs = dict(model=model, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice, max_tokens=80, seed=3)
    pieces = collections.defaultdict(list)
    for chunk in sdk.chat.completions.create(stream=True, **kwargs):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            pieces[call.index].append(call)
    assert pieces
    for index, calls in pieces.items():
        first, *rest = calls
        assert first.id and first.type == "function" and first.function.name in SCHEMAS, index
        assert all(c.id is None and c.function.name is None for c in rest)
        fragments = [c.function.arguments for c in calls if c.function.arguments]
        assert len(fragments) >= 2  # decoded piece by piece, not one string at the end
        jsonschema.validate(json.loads("".join(fragments)), SCHEMAS[first.function.name])
    with sdk.chat.completions.stream(**kwargs) as events:
        kinds = [event.type for event in events]
        final = events.get_final_completion()
    assert kinds.count("tool_calls.function.arguments.delta") >= 2 and "tool_calls.function.arguments.done" in kinds
    assert final.choices[0].finish_reason == "tool_calls"
    for call in final.choices[0].message.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


@pytest.mark.parametrize("step", [1, 2, 5, 200])
def test_forced_calls_stream_finds_names_and_arguments_in_any_split(step):
    document = json.dumps([{"name": "get_weather", "arguments": {"city": 'Pa"r}is\\', "n": [1, {"a": "]"}]}},
                           {"arguments": {"zone": "UTC"}, "name": "get_time"}], separators=(",", ":"))
    stream = ForcedCallsStream("call_first")
    pieces = [piece for i in range(0, len(document), step) for piece in stream.feed(document[i:i + step])]
    calls = {}
    for piece in pieces:
        if piece.id is not None:  # a call starts with its id and name, before any of its arguments
            assert piece.index not in calls and piece.arguments == ""
            calls[piece.index] = [piece.id, piece.name, ""]
        else:
            calls[piece.index][2] += piece.arguments
    assert [(name, json.loads(arguments)) for _, name, arguments in calls.values()] == [
        ("get_weather", {"city": 'Pa"r}is\\', "n": [1, {"a": "]"}]}), ("get_time", {"zone": "UTC"})]
    assert calls[0][0] == "call_first" and calls[1][0].startswith("call_") and calls[1][0] != "call_first"


def test_a_multi_turn_tool_exchange_goes_through_the_chat_template(gateway, tiny_chat):
    sdk, model = gateway
    first = sdk.chat.completions.create(model=model, messages=ASK, tools=[WEATHER], tool_choice="required",
                                        max_tokens=40)
    [call] = first.choices[0].message.tool_calls
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"}]
    answer = sdk.chat.completions.create(model=model, messages=history, tools=[WEATHER], max_tokens=5)
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # the prompt renders the call and its result: more tokens than the question alone
    plain = sdk.chat.completions.create(model=model, messages=ASK, tools=[WEATHER], max_tokens=1)
    assert answer.usage.prompt_tokens > plain.usage.prompt_tokens + 10
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    prompt = tokenizer.apply_chat_template(template_messages(history), tools=[WEATHER], tokenize=False,
                                           add_generation_prompt=True)
    rendered = json.dumps(json.loads(call.function.arguments), ensure_ascii=False)  # as the template's tojson
    assert f'<tool_call>\n{{"name": "get_weather", "arguments": {rendered}}}' in prompt
    assert "<tool_response>\nsunny, 21 degrees\n</tool_response>" in prompt and '"name": "get_weather"' in prompt


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_come_in_the_openai_shape(gateway, stream):
    sdk, model = gateway
    answer = sdk.chat.completions.create(model=model, messages=ASK, max_tokens=12, logprobs=True, top_logprobs=3,
                                         stream=stream, stream_options={"include_usage": True} if stream else None)
    if stream:
        chunks = list(answer)
        entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        completion_tokens = chunks[-1].usage.completion_tokens
    else:
        entries = answer.choices[0].logprobs.content
        text, completion_tokens = answer.choices[0].message.content, answer.usage.completion_tokens
    assert len(entries) == completion_tokens
    assert "".join(e.token for e in entries) == text
    for entry in entries:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode() == entry.token
        assert len(entry.top_logprobs) == 3
        tops = [top.logprob for top in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True) and entry.logprob <= tops[0]


def test_no_logprobs_unless_asked(gateway):
    sdk, model = gateway
    assert sdk.chat.completions.create(model=model, messages=ASK, max_tokens=3).choices[0].logprobs is None


def _greedy_tokens(sdk, model, **kwargs):
    answer = sdk.chat.completions.create(model=model, messages=ASK, max_tokens=30, temperature=0, logprobs=True,
                                         **kwargs)
    return [entry.token for entry in answer.choices[0].logprobs.content]


def test_a_banning_logit_bias_keeps_a_token_out(gateway, tiny_chat):
    sdk, model = gateway
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    free = _greedy_tokens(sdk, model)
    favourite, _ = collections.Counter(free).most_common(1)[0]
    [token_id] = tokenizer.encode(favourite, add_special_tokens=False)
    biased = _greedy_tokens(sdk, model, logit_bias={str(token_id): -100})
    assert favourite not in biased and biased != free


def test_a_frequency_penalty_makes_greedy_output_repeat_less(gateway):
    sdk, model = gateway
    free = collections.Counter(_greedy_tokens(sdk, model)).most_common(1)[0][1]
    assert free > 2  # the random model, greedy, loops
    penalised = collections.Counter(_greedy_tokens(sdk, model, frequency_penalty=2, presence_penalty=1))
    assert penalised.most_common(1)[0][1] < free


def test_a_repetition_penalty_makes_greedy_output_repeat_less(gateway):
    sdk, model = gateway
    free = collections.Counter(_greedy_tokens(sdk, model)).most_common(1)[0][1]
    penalised = collections.Counter(_greedy_tokens(sdk, model, extra_body={"repetition_penalty": 5.0}))
    assert penalised.most_common(1)[0][1] < free


BAD = [
    ({"extra_body": {"repetition_penalty": 0}}, openai.BadRequestError, "`repetition_penalty`"),
    ({"logprobs": True, "top_logprobs": 21}, openai.UnprocessableEntityError, ["body", "top_logprobs"]),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "banana"}}}]},
     openai.UnprocessableEntityError, ["body", "tools", 0, "function", "parameters"]),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     openai.UnprocessableEntityError, ["body", "tool_choice", "function", "name"]),
    ({"logit_bias": {"hello": 5}}, openai.BadRequestError, "`logit_bias`"),
    ({"logit_bias": {"99999999": 5}}, openai.BadRequestError, "`logit_bias`"),
]


@pytest.mark.parametrize(("body", "error", "names"), BAD)
def test_bad_input_is_a_4xx_naming_the_field(gateway, body, error, names):
    sdk, model = gateway
    with pytest.raises(error) as refused:
        sdk.chat.completions.create(model=model, messages=ASK, max_tokens=4, **body)
    detail = refused.value.response.json()["detail"]
    if isinstance(names, list):
        assert detail[0]["loc"] == names
    else:
        assert detail["msg"].startswith(names)


CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}


@pytest.mark.parametrize(("parser", "text"), [
    ("hermes", f"Let me look.<tool_call>\n{json.dumps(CALL)}\n</tool_call>"),
    ("llama3_json", f"Let me look.<|python_tag|>{json.dumps({'name': 'get_weather', 'parameters': CALL['arguments']})}"),
    ("mistral", f"Let me look.[TOOL_CALLS]{json.dumps([CALL])}"),
    ("mistral", "Let me look.[TOOL_CALLS]get_weather[ARGS]" + json.dumps(CALL["arguments"])),
])
def test_the_parsers_find_calls_in_the_formats_templates_teach(parser, text):
    assert parse_calls(parser, text) == ("Let me look.", [("get_weather", '{"city": "Paris"}')])
    splitter = ToolCallSplitter(parser)
    streamed = "".join(splitter.feed(text[i:i + 3]) for i in range(0, len(text), 3))
    content, calls = splitter.finish()
    assert streamed + content == "Let me look." and calls == [("get_weather", '{"city": "Paris"}')]


def test_text_that_is_no_call_stays_content():
    assert parse_calls("hermes", "a <tool_call> not json") == ("a <tool_call> not json", [])
    assert parse_calls("llama3_json", "{not a call}") == ("{not a call}", [])
    splitter = ToolCallSplitter("hermes")
    assert splitter.feed("plain <tool") == "plain " and splitter.feed(" words") == "<tool words"


def test_the_answer_shaper_streams_content_then_the_calls_it_found():
    from warmgate.plugins.llm.backend import GenerationParams
    from warmgate.plugins.llm.tool_output import AnswerShaper

    tokenizer = type("Tokenizer", (), {"eos_token": "<|im_end|>", "pad_token": None, "bos_token": None})()
    shaper = AnswerShaper(GenerationParams(messages=ASK, max_tokens=50, tools=[WEATHER]), None, "hermes", tokenizer)
    text = f'Sure.<tool_call>\n{json.dumps(CALL)}\n</tool_call>\n<tool_call>\n{json.dumps(CALL)}\n</tool_call>'
    deltas = [d for i in range(0, len(text), 5) for d in shaper.feed(text[i:i + 5], 1, None)] + shaper.finish()
    assert "".join(d.text for d in deltas) == "Sure."
    pieces = [piece for d in deltas for piece in d.tool_calls or ()]
    assert [(p.index, p.name, p.arguments) for p in pieces] == [
        (0, "get_weather", ""), (0, None, '{"city": "Paris"}'), (1, "get_weather", ""), (1, None, '{"city": "Paris"}')]
    assert pieces[0].id != pieces[2].id and all(p.id for p in pieces[::2])
    assert sum(d.tokens for d in deltas) == len(range(0, len(text), 5))  # every token billed once
