"""An agent framework end to end: ``langchain-openai``'s ``ChatOpenAI`` against a warmgate
server, its ``bind_tools`` and ``with_structured_output``. Parametrised by backend; the vLLM
relay (its engine process, ``openai_upstream.py``, calls tools and honours JSON schemas as vLLM
does) today, the in-process transformers backend once it constrains its own decoding."""

import httpx
import pydantic
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from warmgate import FunctionConfig, Settings

from .openai_upstream import run_upstream


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class Forecast(pydantic.BaseModel):
    """A forecast for a city."""

    city: str
    days: int
    unit: str


@pytest.fixture(params=["vllm"])
def chat_model(request, warmgate_server):
    """``(ChatOpenAI on the gateway, the engine's URL)``."""
    with run_upstream("org/relayed") as upstream:
        config = FunctionConfig(pipeline="llm", model_id="org/relayed", options={"backend": "vllm", "url": upstream.url})
        server, _ = warmgate_server(Settings(functions=[config]))
        model = ChatOpenAI(model="org/relayed", base_url=server.url + "/v1", api_key="unused", max_retries=0,
                           max_completion_tokens=64)
        yield model, upstream.url


def test_bind_tools_gets_a_tool_call_langchain_can_run(chat_model):
    chat_model, _ = chat_model
    answer = chat_model.bind_tools([get_weather]).invoke("What is the weather in Paris?")
    [call] = answer.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) == {"city"} and call["id"]
    assert get_weather.invoke(call["args"]).startswith("sunny in ")


def test_bind_tools_streams_a_tool_call_langchain_assembles(chat_model):
    chat_model, _ = chat_model
    chunks = list(chat_model.bind_tools([get_weather], tool_choice="get_weather").stream("Weather in Paris?"))
    message = chunks[0]
    for chunk in chunks[1:]:
        message += chunk
    [call] = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)


def test_with_structured_output_answers_the_schema(chat_model):
    chat_model, engine_url = chat_model
    forecast = chat_model.with_structured_output(Forecast).invoke("Three days in Paris")
    assert isinstance(forecast, Forecast) and isinstance(forecast.days, int)
    sent = httpx.get(engine_url + "/last").json()["response_format"]
    assert sent["type"] == "json_schema" and set(sent["json_schema"]["schema"]["required"]) == {"city", "days", "unit"}
