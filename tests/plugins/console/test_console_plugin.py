"""A third party's pipelines get console forms with no console change, and the console's own
JSON endpoints answer bad input with clear 4xx errors. The gateway runs in-process over real
HTTP with API keys on; the browser is Debian's chromium."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import msgspec
import pytest
from msgspec import Meta

from warmgate import FunctionConfig, Settings
from warmgate.core.functions.spec import PipelineSpec, PriceUnit
from warmgate.core.hookspecs import hookimpl
from warmgate.core.settings import AuthSettings, GatewaySettings, Price
from warmgate.testing import EchoPipeline, upload_pipeline

KEY = "console-test-key"


class ReverseRequest(msgspec.Struct, kw_only=True):
    text: Annotated[str, Meta(min_length=1, description="Text to turn around.")]
    model_id: str = ""
    times: Annotated[int, Meta(ge=1, le=5, description="How many times to repeat it.")] = 1
    case: Literal["same", "upper", "lower"] = "same"
    tags: list[str] = []


class ReverseResponse(msgspec.Struct):
    text: str
    tags: list[str]


def _reverse(request: ReverseRequest) -> ReverseResponse:
    text = request.text[::-1] * request.times
    text = text.upper() if request.case == "upper" else text.lower() if request.case == "lower" else text
    return ReverseResponse(text=text, tags=request.tags)


class ThrowawayPlugin:
    """What a third-party package would ship: two pipelines, one JSON and one multipart."""

    @hookimpl
    def register_pipelines(self, register: Any) -> None:
        register(PipelineSpec(name="reverse", request=ReverseRequest, response=ReverseResponse,
                              load=lambda model_id, options: _reverse, default_model_id="reverse-1",
                              price_unit=PriceUnit.CHARACTER, units=lambda r: len(r.text),
                              summary="Reverse text", description="Turns text around (a throwaway test plugin)."))
        register(upload_pipeline("describe-upload"))


class EchoPlugin:
    """Echo pipelines: ``flaky`` fails every load (options below), ``words`` streams."""

    @hookimpl
    def register_pipelines(self, register: Any) -> None:
        register(EchoPipeline("flaky").spec)
        register(EchoPipeline("words").spec)


@pytest.fixture
def gateway(warmgate_server, register_plugin, tmp_path):
    register_plugin(ThrowawayPlugin(), "throwaway-plugin")
    register_plugin(EchoPlugin(), "echo-plugin")
    settings = Settings(gateway=GatewaySettings(cache_dir=str(tmp_path)), auth=AuthSettings(api_keys=[KEY]),
                        functions=[FunctionConfig(pipeline="reverse", price=Price(price_per_unit=1000)),
                                   FunctionConfig(pipeline="flaky", model_id="flaky-1", options={"fail_loads": 1000})])
    return warmgate_server(settings)


def test_the_forms_endpoint_describes_a_third_party_pipeline_from_its_spec(gateway):
    _, client = gateway
    forms = {f["pipeline"]: f for f in client.get("/console/api/forms").json()["forms"]}
    assert {"reverse", "describe-upload", "text-to-image", "llm"} <= forms.keys()
    assert "chat-completions" not in forms  # it serves llm's functions in another wire format
    reverse = forms["reverse"]
    assert (reverse["path"], reverse["encoding"], reverse["plugin"], reverse["price_unit"], reverse["widget"]) == \
        ("/reverse", "json", "throwaway-plugin", "character", "")
    fields = {f["name"]: f for f in reverse["fields"]}
    assert fields["text"] == {"name": "text", "kind": "string", "required": True, "min_length": 1,
                              "description": "Text to turn around."}
    assert fields["times"] == {"name": "times", "kind": "integer", "required": False, "default": 1, "minimum": 1,
                               "maximum": 5, "description": "How many times to repeat it."}
    assert fields["case"] == {"name": "case", "kind": "choice", "required": False, "default": "same",
                              "choices": ["same", "upper", "lower"]}
    assert fields["tags"] == {"name": "tags", "kind": "json", "required": False, "default": []}
    upload = {f["name"]: f for f in forms["describe-upload"]["fields"]}
    assert forms["describe-upload"]["encoding"] == "multipart"
    assert upload["image"]["kind"] == "file" and upload["seed"]["nullable"] is True
    assert forms["llm"]["widget"] == "chat" and forms["segment-anything-2"]["widget"] == "points"
    assert client.get("/console/api/forms/reverse/").json() == reverse


@pytest.mark.parametrize(("method", "path", "status", "says"), [
    ("GET", "/console/api/forms/no-such-pipeline", 404, "no pipeline 'no-such-pipeline' has a form; pipelines: "),
    ("GET", "/console/api/forms/chat-completions", 404, "no pipeline 'chat-completions' has a form"),
    ("GET", "/console/static/nothing.js", 404, "no console file 'nothing.js'"),
    ("GET", "/console/static/console.html", 404, "no console file 'console.html'"),
    ("GET", "/console/static/..%2Froutes.py", 404, "Not Found: no route for GET /console/static/../routes.py"),
    ("GET", "/console/static/", 404, "Not Found"),
    ("POST", "/console/api/forms", 405, "Method Not Allowed"),
    ("DELETE", "/console", 405, "Method Not Allowed"),
])
def test_console_endpoints_answer_bad_requests_with_a_clear_4xx(gateway, method, path, status, says):
    _, client = gateway
    response = client.request(method, path)
    assert response.status_code == status
    assert set(response.json()) == {"detail"} and says in response.json()["detail"]["msg"]


def test_index_links_the_console_and_the_gateway_endpoint_says_auth_is_on(gateway):
    _, client = gateway
    assert client.get("/").json()["console"] == "/console"
    page = client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    info = client.get("/console/api/gateway").json()
    assert (info["auth"], info["keys"], info["ledger"]) == (True, False, True)
    assert info["host"]["cpu_count"] >= 1 and info["host"]["process_max_rss"] > 0


def test_a_third_party_form_runs_with_a_key_kept_in_the_session_only(gateway, page, artifacts, tmp_path):
    server, _ = gateway
    page.goto(f"{server.url}/console")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#key-form").is_visible() and "API keys are on" in page.locator("#key-state").inner_text()
    page.click('#pipeline-tabs button[data-pipeline="reverse"]')
    panel = page.locator('.pipeline-form[data-pipeline="reverse"]')
    assert panel.locator("select[name=case] option").all_inner_texts() == ["same", "upper", "lower"]
    assert panel.locator("input[name=times]").get_attribute("max") == "5"
    panel.locator("[name=text]").fill("stressed")
    panel.locator("button[type=submit]").click()
    failure = panel.locator(".result .failure")
    failure.wait_for()
    assert "bearer token" in failure.inner_text().lower() and "HTTP 401" in panel.locator(".call-meta").inner_text()

    page.fill("#key-input", KEY)
    page.click("#key-form button[type=submit]")
    assert page.evaluate("() => [sessionStorage.getItem('warmgate.apiKey'), localStorage.length]") == [KEY, 0]
    assert page.locator("#key-input").input_value() == ""  # not left in the page either
    panel.locator("[name=times]").fill("2")
    panel.locator("[name=case]").select_option(label="upper")
    panel.locator("[name=tags]").fill('["a", "b"]')
    with page.expect_request(lambda r: r.url.endswith("/reverse")) as sent:
        panel.locator("button[type=submit]").click()
    assert sent.value.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.value.post_data) == {"text": "stressed", "times": 2, "case": "upper", "tags": ["a", "b"]}
    panel.locator(".result .text-result").wait_for()
    assert panel.locator(".result .text-result").inner_text() == "DESSERTSDESSERTS"
    assert "price 8,000 wei for 8 units" in panel.locator(".call-meta").inner_text()
    usage = page.locator("#usage-table")
    usage.wait_for(timeout=15_000)  # refreshed every 5 s, read with the key
    assert "reverse:reverse-1" in usage.inner_text()
    page.screenshot(path=artifacts / "third-party-reverse.png", full_page=True)

    page.click('#pipeline-tabs button[data-pipeline="describe-upload"]')
    upload = page.locator('.pipeline-form[data-pipeline="describe-upload"]')
    upload.locator("[name=image]").set_input_files(files=[{"name": "notes.bin", "mimeType": "application/octet-stream",
                                                           "buffer": b"\x00\x01\x02"}])
    upload.locator("[name=prompt]").fill("what is this")
    upload.locator("button[type=submit]").click()
    shown = upload.locator(".result details[open] pre")  # an unknown shape: its JSON, opened
    shown.wait_for()
    assert json.loads(shown.inner_text()) == {"filename": "notes.bin", "content_type": "application/octet-stream",
                                              "size": 3, "prompt": "what is this", "seed": None, "strength": 0.5}
    upload.screenshot(path=artifacts / "third-party-upload.png")


def test_a_failed_load_shows_its_error_and_a_stream_shows_as_it_comes(gateway, page, artifacts):
    server, client = gateway
    failed = client.post("/flaky", json={"prompt": "hi"}, headers={"Authorization": f"Bearer {KEY}"})
    assert failed.status_code == 503
    page.goto(f"{server.url}/console")
    page.wait_for_selector("body[data-ready=true]")
    row = page.locator('#functions-table tr[data-function="flaky:flaky-1"]')
    row.wait_for()
    assert row.get_attribute("data-state") == "error"
    assert "weights for flaky-1 are unreadable" in row.locator(".error-text").inner_text()
    row.screenshot(path=artifacts / "function-error.png")

    page.evaluate(f"() => sessionStorage.setItem('warmgate.apiKey', '{KEY}')")
    page.click('#pipeline-tabs button[data-pipeline="words"]')
    panel = page.locator('.pipeline-form[data-pipeline="words"]')
    panel.locator("[name=prompt]").fill("one two three")
    panel.locator("[name=stream]").check()
    panel.locator("button[type=submit]").click()
    stream = panel.locator(".result pre.stream-text")
    stream.wait_for()
    page.wait_for_function("pre => pre.textContent.split('\\n').filter(Boolean).length === 3", arg=stream.element_handle())
    assert [json.loads(line) for line in stream.inner_text().splitlines()] == \
        [{"delta": "one"}, {"delta": "two"}, {"delta": "three"}]
    assert "to the first byte" in panel.locator(".call-meta").inner_text()
