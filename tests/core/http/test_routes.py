"""Routes built from PipelineSpecs, over real HTTP: JSON, multipart, streaming, headers, OpenAPI."""

import msgspec
import pytest

from warmgate import FunctionConfig, PipelineSpec, Settings
from warmgate.testing import EchoPipeline, MockRunner, UploadRequest, UploadResponse, mock_pipeline


@pytest.fixture
def echo_client(warmgate_server):
    echo = EchoPipeline()
    _, client = warmgate_server(Settings(), pipelines={"echo": echo.spec})
    return client


def test_json_route_answers_with_the_runner_result(echo_client):
    r = echo_client.post("/echo", json={"prompt": "hi", "repeat": 3})
    assert r.status_code == 200
    assert r.json() == {"text": "hi hi hi", "model_id": "echo-1"}
    assert r.headers["content-type"] == "application/json"


def test_trailing_slash_variant_is_served(echo_client):
    r = echo_client.post("/echo/", json={"prompt": "slash"})
    assert r.status_code == 200
    assert r.json()["text"] == "slash"


def test_extra_paths_from_the_spec_are_routes(warmgate_server):
    echo = EchoPipeline(paths=("/echo", "/v1/echo"))
    _, client = warmgate_server(Settings(), pipelines={"echo": echo.spec})
    assert client.post("/v1/echo", json={"prompt": "a"}).json()["text"] == "a"
    assert client.post("/v1/echo/", json={"prompt": "b"}).json()["text"] == "b"


def test_blank_model_id_takes_the_default_and_named_model_is_routed(warmgate_server):
    echo = EchoPipeline()
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="small"),
                                   FunctionConfig(pipeline="echo", model_id="large", aliases=["big"])])
    _, client = warmgate_server(settings, pipelines={"echo": echo.spec})
    assert client.post("/echo", json={"prompt": "x", "model_id": ""}).json()["model_id"] == "small"
    assert client.post("/echo", json={"prompt": "x", "model_id": "large"}).json()["model_id"] == "large"
    assert client.post("/echo", json={"prompt": "x", "model_id": "big"}).json()["model_id"] == "large"


def test_every_response_carries_request_id_and_overhead(echo_client):
    r = echo_client.post("/echo", json={"prompt": "hi"}, headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert float(r.headers["x-warmgate-overhead-ms"]) >= 0
    generated = echo_client.get("/health").headers["x-request-id"]
    assert len(generated) == 32 and generated != "abc-123"


def test_streaming_runner_is_sent_as_server_sent_events(echo_client):
    with echo_client.stream("POST", "/echo", json={"prompt": "one two", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events == ['data: {"delta":"one"}', 'data: {"delta":"two"}', "data: [DONE]"]
    # the slot was released when the stream ended
    assert echo_client.get("/functions").json()["functions"][0]["in_flight"] == 0


@pytest.fixture
def upload(warmgate_server):
    runner = MockRunner()
    spec = mock_pipeline("upload", runner, request=UploadRequest, response=UploadResponse, encoding="multipart")
    _, client = warmgate_server(Settings(), pipelines={"upload": spec})
    return client, runner


def test_multipart_route_reads_files_and_coerces_fields(upload):
    client, runner = upload
    runner.enqueue(UploadResponse(filename="cat.png", content_type="image/png", size=4, prompt="p", seed=7, strength=0.25))
    r = client.post("/upload", files={"image": ("cat.png", b"\x89PNG", "image/png")},
                    data={"prompt": "make it blue", "seed": "7", "strength": "0.25"})
    assert r.status_code == 200, r.text
    request = runner.history[-1]
    assert request.image.filename == "cat.png"
    assert request.image.content_type == "image/png"
    assert request.image.data == b"\x89PNG"
    assert (request.prompt, request.seed, request.strength) == ("make it blue", 7, 0.25)


def test_multipart_missing_file_is_422_naming_it(upload):
    client, _ = upload
    r = client.post("/upload", data={"prompt": "x"}, files={"other": ("a.txt", b"a", "text/plain")})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "image"]


def test_multipart_text_where_a_file_belongs_is_422(upload):
    client, _ = upload
    r = client.post("/upload", data={"prompt": "x", "image": "not a file"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "image"]


def test_multipart_file_where_text_belongs_is_422(upload):
    client, _ = upload
    r = client.post("/upload", files={"image": ("a.png", b"a", "image/png"), "prompt": ("p.txt", b"x", "text/plain")})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_multipart_field_out_of_range_is_422(upload):
    client, _ = upload
    r = client.post("/upload", files={"image": ("a.png", b"a", "image/png")}, data={"prompt": "x", "strength": "3"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "strength"]


def test_multipart_route_sent_no_content_type_is_422_naming_a_required_field(upload):
    """The runner spec's answer (FastAPI reads no form fields, then every required one is missing)."""
    client, runner = upload
    r = client.post("/upload", content=b"prompt=x")
    assert "content-type" not in r.request.headers
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "image"], "msg": "Field required", "type": "missing"}]
    assert runner.history == []


def test_multipart_route_given_json_is_415(upload):
    client, _ = upload
    r = client.post("/upload", json={"prompt": "x"})
    assert r.status_code == 415
    assert "multipart/form-data" in r.json()["detail"]["msg"]


def test_openapi_document_describes_pipelines_and_core_routes(warmgate_server):
    echo = EchoPipeline()
    spec = mock_pipeline("upload", MockRunner(), request=UploadRequest, response=UploadResponse, encoding="multipart")
    _, client = warmgate_server(Settings(), pipelines={"echo": echo.spec, "upload": spec})
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    echo_op = doc["paths"]["/echo"]["post"]
    assert echo_op["operationId"] == "genEcho"
    assert echo_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EchoRequest")
    assert set(echo_op["responses"]) >= {"200", "400", "401", "422", "500", "503"}
    assert echo_op["security"] == [{"HTTPBearer": []}]
    upload_op = doc["paths"]["/upload"]["post"]
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    image = doc["components"]["schemas"]["UploadRequest"]["properties"]["image"]
    assert image == {"type": "string", "format": "binary"}
    assert doc["components"]["schemas"]["EchoRequest"]["required"] == ["prompt"]
    for path in ("/health", "/hardware/info", "/hardware/stats", "/version", "/functions"):
        assert "get" in doc["paths"][path]


def test_spec_rejects_file_fields_on_a_json_pipeline():
    with pytest.raises(ValueError, match="multipart"):
        PipelineSpec(name="bad", request=UploadRequest, response=UploadResponse, load=lambda m, o: None)


def test_spec_rejects_a_request_type_that_is_not_a_struct():
    with pytest.raises(TypeError, match="msgspec.Struct"):
        PipelineSpec(name="bad", request=dict, response=msgspec.Struct, load=lambda m, o: None)
