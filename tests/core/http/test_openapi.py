"""The OpenAPI document of a real gateway (every plugin installed, plus a test plugin's route):
valid OpenAPI 3.1, every route in it with every status it can answer, and a plugin route's
request and response schemas taken from its Litestar handler with no core change."""

import msgspec
import pytest
from litestar import Response, Router, get, post
from litestar.params import JSONBody
from openapi_spec_validator import validate

from warmgate import Settings
from warmgate.core.hookspecs import hookimpl

LIVEPEER_PIPELINE = {400, 401, 402, 403, 413, 422, 429, 500, 502, 503, 504}
ROUTES = {
    ("/text-to-image", "post"): LIVEPEER_PIPELINE,
    ("/image-to-image", "post"): LIVEPEER_PIPELINE | {415},
    ("/audio-to-text", "post"): LIVEPEER_PIPELINE | {415},
    ("/llm", "post"): LIVEPEER_PIPELINE,
    ("/v1/chat/completions", "post"): LIVEPEER_PIPELINE | {404},
    ("/llm/chat/completions", "post"): LIVEPEER_PIPELINE | {404},
    ("/live-video-to-video", "post"): {400, 401, 402, 403, 413, 422, 500, 503},
    ("/live/sessions", "post"): {400, 401, 402, 403, 413, 422, 500, 503},
    ("/live/sessions", "get"): {401, 500},
    ("/live/sessions/{session_id}", "delete"): {401, 404, 500},
    ("/v1/models", "get"): {500},
    ("/pricing", "get"): {500},
    ("/usage", "get"): {400, 401, 403, 500},
    ("/metrics", "get"): set(),
    ("/health", "get"): set(),
    ("/functions", "get"): set(),
}


class Greeting(msgspec.Struct):
    name: str


class Greeted(msgspec.Struct):
    text: str


@post("/greet", summary="Greet someone", status_code=200, opt={"errors": (401,)})
async def greet(data: JSONBody[Greeting]) -> Greeted:
    """Says hello (a third party's route: its schemas come from these annotations)."""
    return Greeted(text=f"hello {data.name}")


@get("/status", sync_to_thread=False, opt={"response": Greeted})
def greeter_status() -> Response[bytes]:
    return Response(msgspec.json.encode(Greeted(text="ready")), media_type="application/json")


class GreeterPlugin:
    @hookimpl
    def register_routes(self, register):
        register(greet)
        register(Router(path="/greeter", route_handlers=[greeter_status]))


@pytest.fixture
def document(warmgate_server, register_plugin):
    register_plugin(GreeterPlugin(), "undo-greeter")
    _, client = warmgate_server(Settings())
    assert client.post("/greet", json={"name": "ada"}).json() == {"text": "hello ada"}  # the routes are real
    assert client.get("/greeter/status").json() == {"text": "ready"}
    return client.get("/openapi.json").json()


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document)


@pytest.mark.parametrize(("path", "method"), list(ROUTES))
def test_every_route_is_documented_with_every_status_it_can_answer(document, path, method):
    operation = document["paths"][path][method]
    statuses = {int(code) for code in operation["responses"]}
    assert statuses == {200} | ROUTES[path, method]
    for code, response in operation["responses"].items():
        if code != "200":
            schema = "HTTPValidationError" if code == "422" else "HTTPError"
            assert response["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
    assert ("security" in operation) is (401 in statuses)


def test_a_plugin_route_carries_its_request_and_response_schemas(document):
    operation = document["paths"]["/greet"]["post"]
    assert operation["summary"] == "Greet someone" and operation["operationId"] == "greet"
    assert operation["description"].startswith("Says hello")
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert (body, answer) == ({"$ref": "#/components/schemas/Greeting"}, {"$ref": "#/components/schemas/Greeted"})
    schemas = document["components"]["schemas"]
    assert schemas["Greeting"]["required"] == ["name"] and schemas["Greeted"]["properties"] == {"text": {"type": "string"}}
    assert {int(c) for c in operation["responses"]} == {200, 400, 401, 413, 422, 500}
    in_router = document["paths"]["/greeter/status"]["get"]  # a Router's handlers, by their full path
    assert in_router["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Greeted")


def test_query_and_path_parameters_are_documented(document):
    usage = {p["name"]: p for p in document["paths"]["/usage"]["get"]["parameters"]}
    assert set(usage) == {"key", "since"} and usage["since"]["in"] == "query" and not usage["since"]["required"]
    [session_id] = document["paths"]["/live/sessions/{session_id}"]["delete"]["parameters"]
    assert (session_id["name"], session_id["in"], session_id["required"]) == ("session_id", "path", True)
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_the_live_session_schemas_match_what_the_routes_answer(warmgate_server):
    from warmgate.plugins.live.routes import HostedSession, SessionList, StoppedSession

    _, client = warmgate_server(Settings())
    started = client.post("/live/sessions", json={"params": {"width": 384, "height": 384}})
    session = msgspec.convert(started.json(), HostedSession)
    msgspec.convert(client.get("/live/sessions").json(), SessionList)
    msgspec.convert(client.delete(f"/live/sessions/{session.id}").json(), StoppedSession)
