"""The Ollama embeddings backend over real HTTP: the gateway on one port, the fake Ollama
(speaking ``/api/embed``) on another, driven by the openai SDK."""

import httpx
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Scaling
from warmgate.testing import wait_for

from ..fake_ollama import FakeModel, embedding, run_fake_ollama

NOMIC = "nomic-embed-text:v1.5"
SIZE = 16
CONTEXT = 8


@pytest.fixture
def fake():
    """A fake Ollama that can pull a small embedding model but has nothing local yet."""
    model = FakeModel(name=NOMIC, family="nomic-bert", embedding_length=SIZE, context_length=CONTEXT)
    with run_fake_ollama(library=[model]) as server:
        yield server


@pytest.fixture
def gateway(fake, warmgate_server, sdk):
    """The gateway with one Ollama-backed embeddings function; started after ``fake``, so the
    fake outlives it (the gateway unloads on shutdown)."""

    def start(options=None, **config):
        options = {"backend": "ollama", "host": fake.url, **(options or {})}
        function = FunctionConfig(pipeline="embeddings", model_id=NOMIC, options=options, **config)
        server, client = warmgate_server(Settings(functions=[function]))
        return server, client, sdk(server.url + "/v1")

    return start


def test_a_cold_start_pulls_the_model_then_embeds_a_batch_in_one_call(gateway, fake):
    _, _, sdk = gateway()
    texts = ["warm gates open", "fast"]
    answer = sdk.embeddings.create(model=NOMIC, input=texts, encoding_format="float")
    assert [item.embedding for item in answer.data] == [embedding(t, SIZE) for t in texts]
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 4
    assert len(fake.requests("/api/pull")) == 1
    [call] = fake.requests("/api/embed")
    assert (call["input"], call["truncate"]) == (texts, False)


def test_base64_and_dimensions_give_what_ollama_would(gateway, fake):
    _, client, sdk = gateway()
    answer = sdk.embeddings.create(model=NOMIC, input="hello", dimensions=4)  # the SDK asks for base64
    assert answer.data[0].embedding == pytest.approx(embedding("hello", 4), abs=1e-6)  # the fake's own truncation
    r = client.post("/v1/embeddings", json={"input": "hello", "dimensions": SIZE + 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dimensions"]


def test_an_input_over_the_context_is_a_400_with_ollamas_reason(gateway):
    _, client, _ = gateway()
    r = client.post("/v1/embeddings", json={"input": "word " * (CONTEXT + 1)})
    assert r.status_code == 400
    assert "the input length exceeds the context length" in r.json()["detail"]["msg"]


def test_token_ids_are_refused_naming_the_field_and_the_backend(gateway):
    _, client, _ = gateway()
    r = client.post("/v1/embeddings", json={"input": [1, 2, 3]})
    assert r.status_code == 400
    assert r.json()["detail"]["msg"].startswith("input: the ollama embeddings backend takes text only")


def test_scale_to_zero_unloads_the_model_from_ollama(gateway, fake):
    _, client, sdk = gateway(scaling=Scaling(idle_timeout=0.2))

    def running():
        return [m["name"] for m in httpx.get(fake.url + "/api/ps").json()["models"]]

    sdk.embeddings.create(model=NOMIC, input="hello")
    assert fake.requests("/api/embed")[-1]["keep_alive"] == 1  # as long as warmgate keeps it
    assert wait_for(lambda: fake.unloads == [NOMIC])
    assert running() == []
    assert len(sdk.embeddings.create(model=NOMIC, input="again").data) == 1
    assert running() == [NOMIC] and len(fake.requests("/api/pull")) == 1
