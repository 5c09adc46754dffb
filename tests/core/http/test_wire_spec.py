"""The OpenAPI document warmgate writes against the Livepeer runner spec (tests/fixtures/spec,
copied from ../shared/spec): for every runner route warmgate serves, the same request fields,
required fields, defaults and body encoding."""

from pathlib import Path

import pytest
import yaml

from warmgate import Settings

SPEC = yaml.safe_load((Path(__file__).parents[2] / "fixtures" / "spec" / "ai-runner-openapi.yaml").read_text())
ROUTES = ["/text-to-image", "/image-to-image", "/image-to-video", "/upscale", "/image-to-text", "/audio-to-text",
          "/text-to-speech", "/segment-anything-2", "/llm", "/live-video-to-video"]


@pytest.fixture(scope="module")
def document():
    import httpx

    from warmgate.core.http.app import create_app
    from warmgate.testing import serve

    with serve(create_app(Settings())) as server:
        return httpx.get(server.url + "/openapi.json").json()


def _request_schema(doc, path):
    [(content_type, body)] = doc["paths"][path]["post"]["requestBody"]["content"].items()
    return content_type, doc["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]


@pytest.mark.parametrize("path", ROUTES)
def test_request_bodies_match_the_runner_spec(document, path):
    their_type, theirs = _request_schema(SPEC, path)
    our_type, ours = _request_schema(document, path)
    assert our_type == their_type
    assert set(ours["properties"]) == set(theirs["properties"])
    assert set(ours.get("required", [])) == set(theirs.get("required", []))
    for name, field in theirs["properties"].items():
        assert ours["properties"][name].get("default") == field.get("default"), name
        if field.get("format") == "binary":
            assert (ours["properties"][name]["type"], ours["properties"][name]["format"]) == ("string", "binary")


@pytest.mark.parametrize("path", ROUTES)
def test_operation_ids_match_the_runner_spec(document, path):
    assert document["paths"][path]["post"]["operationId"] == SPEC["paths"][path]["post"]["operationId"]


def test_the_live_video_to_video_response_matches_the_runner_spec(document):
    def response(doc):
        ref = doc["paths"]["/live-video-to-video"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        return doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]

    ours, theirs = response(document), response(SPEC)
    assert set(ours["properties"]) == set(theirs["properties"])
    assert set(ours["required"]) == set(theirs["required"])
    for name, field in theirs["properties"].items():
        assert ours["properties"][name].get("default") == field.get("default"), name
        assert ours["properties"][name]["description"] == field["description"], name
