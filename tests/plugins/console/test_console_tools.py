"""The console's chat in a real browser against a gateway whose LLM function relays to an
engine that calls tools and answers JSON (``tests/plugins/llm/openai_upstream.py``): a tool call
is shown as a tool call (its name, its arguments formatted), JSON output is shown formatted."""

from __future__ import annotations

import json

import pytest

from tests.plugins.llm.openai_upstream import run_upstream
from warmgate import FunctionConfig, Settings

WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"]}}}]


@pytest.fixture
def chat(warmgate_server, page):
    """The console's LLM chat panel, on a relay function."""
    with run_upstream("org/relayed") as upstream:
        config = FunctionConfig(pipeline="llm", model_id="org/relayed", options={"backend": "vllm", "url": upstream.url})
        server, _ = warmgate_server(Settings(functions=[config]))
        page.goto(f"{server.url}/console")
        page.wait_for_selector("body[data-ready=true]")
        page.click('#pipeline-tabs button[data-pipeline="llm"]')
        panel = page.locator('.pipeline-form[data-pipeline="llm"]')
        panel.locator("form.fields [name=max_tokens]").fill("40")
        panel.locator(".chat-openai summary").click()
        yield page, panel


def test_the_chat_shows_a_tool_call_as_a_tool_call(chat):
    page, panel = chat
    panel.locator(".chat-tools").fill(json.dumps(WEATHER))
    panel.locator(".chat-text").fill("Weather in Paris?")
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions") and r.method == "POST") as sent:
        panel.locator(".chat-input button.primary").click()
    body = json.loads(sent.value.post_data)
    assert body["tools"] == WEATHER and body["stream"] is True and body["max_tokens"] == 40
    panel.locator(".msg.assistant[data-done=true]").wait_for()
    call = panel.locator(".msg.assistant .tool-call")
    assert call.locator(".tool-name").inner_text() == "get_weather"
    arguments = call.locator(".tool-arguments").inner_text()
    assert json.loads(arguments) == {"city": "v", "days": 1} and "\n" in arguments  # formatted, a line a key


def test_the_chat_shows_json_output_formatted(chat):
    page, panel = chat
    panel.locator(".chat-json").check()
    panel.locator(".chat-text").fill("Answer in JSON")
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions") and r.method == "POST") as sent:
        panel.locator(".chat-input button.primary").click()
    assert json.loads(sent.value.post_data)["response_format"] == {"type": "json_object"}
    panel.locator(".msg.assistant[data-done=true]").wait_for()
    shown = panel.locator(".msg.assistant pre.json").inner_text()
    assert shown == json.dumps({"answer": "v"}, indent=2)
    assert panel.locator(".msg.assistant").inner_text().strip() == shown.strip()  # the raw text is replaced
