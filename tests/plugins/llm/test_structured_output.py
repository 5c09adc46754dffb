"""``response_format`` through the openai SDK: Ollama gets it as ``format`` (the fake answers
JSON valid for it, as a constrained Ollama does), the vLLM relay hands it to its engine as is;
every answer is validated with ``jsonschema``."""

import json

import httpx
import jsonschema
import openai
import pytest

from warmgate import FunctionConfig, Settings

from .fake_ollama import FakeModel, run_fake_ollama
from .openai_upstream import run_upstream

OLLAMA_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                           "unit": {"enum": ["C", "F"]}},
          "required": ["city", "days", "unit"], "additionalProperties": False}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": SCHEMA, "strict": True}}
ASK = [{"role": "user", "content": "three days in Paris"}]


@pytest.fixture
def gateway(warmgate_server):
    with run_upstream("org/relayed") as upstream, run_fake_ollama(local=[FakeModel(name="llama3.1:8b")]) as ollama:
        functions = [
            FunctionConfig(pipeline="llm", model_id="org/relayed", options={"backend": "vllm", "url": upstream.url}),
            FunctionConfig(pipeline="llm", model_id=OLLAMA_MODEL, options={"backend": "ollama", "host": ollama.url})]
        server, _ = warmgate_server(Settings(functions=functions))
        with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as sdk:
            yield sdk, upstream, ollama


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_answers_a_json_schema_with_json_that_validates(gateway, stream):
    sdk, _, ollama = gateway
    answer = sdk.chat.completions.create(model=OLLAMA_MODEL, messages=ASK, response_format=JSON_SCHEMA,
                                         max_tokens=100, stream=stream)
    text = ("".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream
            else answer.choices[0].message.content)
    jsonschema.validate(json.loads(text), SCHEMA)
    assert ollama.chats[-1].body["format"] == SCHEMA


def test_ollama_answers_json_object_with_a_json_object(gateway):
    sdk, _, ollama = gateway
    answer = sdk.chat.completions.create(model=OLLAMA_MODEL, messages=ASK, response_format={"type": "json_object"})
    jsonschema.validate(json.loads(answer.choices[0].message.content), {"type": "object"})
    assert ollama.chats[-1].body["format"] == "json"


def test_response_format_text_changes_nothing(gateway):
    sdk, upstream, ollama = gateway
    answer = sdk.chat.completions.create(model=OLLAMA_MODEL, messages=ASK, response_format={"type": "text"})
    assert answer.choices[0].message.content == "three days in Paris" and "format" not in ollama.chats[-1].body
    sdk.chat.completions.create(model="org/relayed", messages=ASK, response_format={"type": "text"}, max_tokens=2)
    assert httpx.get(upstream.url + "/last").json()["response_format"] == {"type": "text"}


def test_the_relay_hands_the_schema_to_its_engine(gateway):
    sdk, upstream, _ = gateway
    sdk.chat.completions.create(model="org/relayed", messages=ASK, response_format=JSON_SCHEMA, max_tokens=2)
    assert httpx.get(upstream.url + "/last").json()["response_format"] == JSON_SCHEMA
