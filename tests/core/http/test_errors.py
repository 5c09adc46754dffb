"""Every error shape: 400, 404, 405, 413, 415, 422, 500 — always {"detail": ...}, never a crash."""

import socket
from urllib.parse import urlparse

import pytest

from warmgate import ClientError, Settings
from warmgate.core.settings import GatewaySettings
from warmgate.testing import EchoPipeline, MockRunner, mock_pipeline, upload_pipeline


@pytest.fixture
def server(warmgate_server):
    echo = EchoPipeline()
    return warmgate_server(Settings(gateway=GatewaySettings(max_body_size=1024)), pipelines={"echo": echo.spec})


@pytest.fixture
def client(server):
    return server[1]


def _msg(response):
    body = response.json()
    assert set(body) == {"detail"} and set(body["detail"]) == {"msg"}, body
    return body["detail"]["msg"]


def test_malformed_json_is_400(client):
    r = client.post("/echo", content=b'{"prompt": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "malformed JSON" in _msg(r)


def test_empty_body_is_400(client):
    r = client.post("/echo", content=b"")
    assert r.status_code == 400
    assert "empty" in _msg(r)


def test_json_that_is_not_an_object_is_422(client):
    r = client.post("/echo", json=["prompt"])
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body"]


@pytest.mark.parametrize(("body", "loc", "kind"), [
    ({}, ["body", "prompt"], "missing"),
    ({"prompt": 5}, ["body", "prompt"], "type_error"),
    ({"prompt": ""}, ["body", "prompt"], "value_error"),
    ({"prompt": "x", "repeat": 0}, ["body", "repeat"], "value_error"),
    ({"prompt": "x", "repeat": "2"}, ["body", "repeat"], "type_error"),
])
def test_schema_violations_are_422_naming_the_field(client, body, loc, kind):
    r = client.post("/echo", json=body)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == loc
    assert error["type"] == kind
    assert error["msg"]


def test_unknown_route_is_404_in_the_same_shape(client):
    r = client.get("/no/such/route")
    assert r.status_code == 404
    assert "/no/such/route" in _msg(r)


def test_wrong_method_is_405(client):
    r = client.get("/echo")
    assert r.status_code == 405
    assert "GET" in _msg(r)


def test_unknown_model_is_400_naming_it_and_listing_the_served_ones(client):
    r = client.post("/echo", json={"prompt": "x", "model_id": "nope/model"})
    assert r.status_code == 400
    assert "'nope/model'" in _msg(r) and "echo-1" in _msg(r)


def test_an_unknown_model_is_the_sdks_typed_error_livepeer_400_and_openai_404(warmgate_server):
    """The real plugins' routes, with functions that never load (the model is resolved first)."""
    import openai
    from livepeer_ai import Livepeer
    from livepeer_ai.models import errors

    from warmgate import FunctionConfig

    functions = [FunctionConfig(pipeline="text-to-image", model_id="org/served-sd"),
                 FunctionConfig(pipeline="llm", model_id="org/served-chat")]
    server, client = warmgate_server(Settings(functions=functions))
    with Livepeer(http_bearer="unused", server_url=server.url) as sdk:
        with pytest.raises(errors.HTTPError) as image:
            sdk.generate.text_to_image(request={"model_id": "org/nope", "prompt": "a boat"})
        with pytest.raises(errors.HTTPError) as text:
            sdk.generate.llm(request={"model": "org/nope", "messages": [{"role": "user", "content": "hi"}]})
    for raised, served in ((image, "org/served-sd"), (text, "org/served-chat")):  # SDKError for a 404
        assert "'org/nope'" in raised.value.data.detail.msg and served in raised.value.data.detail.msg
    assert client.post("/text-to-image", json={"model_id": "org/nope", "prompt": "x"}).status_code == 400
    chat = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        chat.chat.completions.create(model="org/nope", messages=[{"role": "user", "content": "hi"}])
    assert "org/served-chat" in _msg(missing.value.response)
    r = client.post("/llm/chat/completions", json={"model": "org/nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and "'org/nope'" in _msg(r)


def test_body_over_the_limit_is_413(client):
    r = client.post("/echo", json={"prompt": "x" * 4096})
    assert r.status_code == 413
    assert _msg(r)


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(8):
            yield b"x" * 512

    r = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_413_is_answered_from_content_length_without_reading_the_body(server):
    srv, _ = server
    url = urlparse(srv.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n")  # announces 100 MB, sends none of it
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert '"detail":{"msg":' in reply


def test_inference_failure_is_500_with_the_reason_and_the_function_recovers(client):
    r = client.post("/echo", json={"prompt": "x", "fail": True})
    assert r.status_code == 500
    assert "echo was asked to fail" in _msg(r)
    ok = client.post("/echo", json={"prompt": "again"})
    assert ok.status_code == 200 and ok.json()["text"] == "again"


def test_runner_client_error_passes_through_with_its_status(warmgate_server):
    runner = MockRunner()
    runner.enqueue(ClientError("image is not a PNG"))
    _, client = warmgate_server(Settings(), pipelines={"m": mock_pipeline("m", runner)})
    r = client.post("/m", json={"prompt": "x"})
    assert r.status_code == 400
    assert _msg(r) == "image is not a PNG"


def test_unencodable_runner_result_is_500_not_a_crash(warmgate_server):
    runner = MockRunner(default=object())
    _, client = warmgate_server(Settings(), pipelines={"m": mock_pipeline("m", runner)})
    r = client.post("/m", json={"prompt": "x"})
    assert r.status_code == 500
    assert "cannot be encoded" in _msg(r)
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_json_nested_too_deeply_is_a_400_not_a_500(warmgate_server, depth):
    # msgspec stops at the recursion limit even inside a field the request does not declare
    _, client = warmgate_server(pipelines={"echo": EchoPipeline().spec})
    body = b'{"prompt": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}"
    r = client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in _msg(r)
    assert client.post("/echo", json={"prompt": "x"}).status_code == 200


@pytest.fixture
def uploads(warmgate_server):
    return warmgate_server(pipelines={"upload": upload_pipeline()})[1]


def test_a_multipart_body_with_too_many_parts_is_a_413(uploads):
    from warmgate.core.http.decode import MAX_FORM_PARTS

    image = {"image": ("a.png", b"png", "image/png")}
    fields = {"prompt": "x"} | {f"f{i}": "y" for i in range(MAX_FORM_PARTS)}
    r = uploads.post("/upload", files=image, data=fields)
    assert r.status_code == 413 and f"more than {MAX_FORM_PARTS} parts" in _msg(r)
    fitting = dict(list(fields.items())[:MAX_FORM_PARTS - 1])  # with the image: exactly the limit
    assert uploads.post("/upload", files=image, data=fitting).status_code == 200


def test_a_huge_multipart_text_field_is_a_413_naming_it(uploads):
    from warmgate.core.http.decode import MAX_FORM_TEXT_CHARS

    image = {"image": ("a.png", b"png", "image/png")}
    r = uploads.post("/upload", files=image, data={"prompt": "x" * (MAX_FORM_TEXT_CHARS + 1)})
    assert r.status_code == 413 and "prompt" in _msg(r) and str(MAX_FORM_TEXT_CHARS) in _msg(r)
    assert uploads.post("/upload", files=image, data={"prompt": "x" * MAX_FORM_TEXT_CHARS}).status_code == 200
