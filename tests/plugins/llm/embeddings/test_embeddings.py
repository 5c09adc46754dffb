"""The embeddings pipeline over real HTTP, driven by the openai SDK: the tiny local encoder on
the transformers backend, the relay to another OpenAI-compatible server, pricing, metering,
scale to zero and every refused input."""

import base64
import shutil
import struct
from pathlib import Path

import numpy as np
import openai
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.http.app import create_app
from warmgate.core.http.errors import ConfigError
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import Price, Scaling
from warmgate.plugins.llm import embeddings
from warmgate.plugins.llm.embeddings.demo import CONTEXT_LENGTH, HIDDEN_SIZE
from warmgate.plugins.llm.embeddings.wire import MAX_INPUTS
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import wait_for


@pytest.fixture(scope="session")
def tiny_embed(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["embeddings"]))


@pytest.fixture
def gateway(warmgate_server, tiny_embed):
    """``gateway(**function_config)``: a gateway with one embeddings function on the tiny model."""

    def start(settings=None, **config):
        function = FunctionConfig(pipeline="embeddings", model_id=tiny_embed, aliases=["tiny"], **config)
        return warmgate_server(Settings(functions=[function], **(settings or {})))

    return start


def _norms(vectors):
    return np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)


def _function(client):
    [fn] = [f for f in client.get("/functions").json()["functions"] if f["pipeline"] == "embeddings"]
    return fn


# -- the openai SDK on transformers -------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/v1", "/llm"])
def test_sdk_embeds_a_string_as_a_normalised_vector_with_usage(gateway, sdk, tiny_embed, prefix):
    server, _ = gateway()
    answer = sdk(server.url + prefix).embeddings.create(model="tiny", input="hello world", encoding_format="float")
    [item] = answer.data
    assert (answer.object, answer.model, item.object, item.index) == ("list", tiny_embed, "embedding", 0)
    assert len(item.embedding) == HIDDEN_SIZE
    assert _norms([item.embedding])[0] == pytest.approx(1, abs=1e-5)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 4  # [CLS] hello world [SEP]


def test_base64_is_little_endian_float32_of_the_same_vector(gateway, sdk):
    server, client = gateway()
    floats = sdk(server.url + "/v1").embeddings.create(model="tiny", input="the quick brown fox",
                                                       encoding_format="float").data[0].embedding
    raw = client.post("/v1/embeddings", json={"input": "the quick brown fox", "encoding_format": "base64"}).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{HIDDEN_SIZE}f", packed)) == pytest.approx(floats, abs=1e-6)
    # the SDK asks for base64 when no format is given, and decodes it itself
    decoded = sdk(server.url + "/v1").embeddings.create(model="tiny", input="the quick brown fox").data[0].embedding
    assert decoded == pytest.approx(floats, abs=1e-6)


def test_a_batch_is_one_vector_per_input_in_order_each_as_if_alone(gateway, sdk):
    server, _ = gateway()
    client = sdk(server.url + "/v1")
    texts = ["hello", "the quick brown fox jumps over", "warm gate model embed search query"]
    batch = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    assert [item.index for item in batch.data] == [0, 1, 2]
    alone = [client.embeddings.create(model="tiny", input=t, encoding_format="float").data[0].embedding for t in texts]
    for together, single in zip(batch.data, alone, strict=True):
        assert together.embedding == pytest.approx(single, abs=1e-5)  # padding does not change a vector
    assert batch.usage.prompt_tokens == sum(
        client.embeddings.create(model="tiny", input=t).usage.prompt_tokens for t in texts)


def test_token_id_input_embeds_the_ids_as_given(gateway, sdk):
    server, _ = gateway()
    client = sdk(server.url + "/v1")
    text = client.embeddings.create(model="tiny", input="hello world", encoding_format="float")
    ids = client.embeddings.create(model="tiny", input=[2, 145, 146, 3], encoding_format="float")
    assert ids.usage.prompt_tokens == 4
    assert ids.data[0].embedding == pytest.approx(text.data[0].embedding, abs=1e-5)
    many = client.embeddings.create(model="tiny", input=[[2, 145, 3], [2, 146, 146, 146, 3]], encoding_format="float")
    assert len(many.data) == 2 and many.usage.prompt_tokens == 8


def test_dimensions_truncates_and_renormalises(gateway, sdk):
    server, _ = gateway()
    client = sdk(server.url + "/v1")
    full = np.asarray(client.embeddings.create(model="tiny", input="hello", encoding_format="float").data[0].embedding)
    cut = client.embeddings.create(model="tiny", input="hello", dimensions=8, encoding_format="float").data[0].embedding
    assert len(cut) == 8 and _norms([cut])[0] == pytest.approx(1, abs=1e-5)
    assert np.asarray(cut) == pytest.approx(full[:8] / np.linalg.norm(full[:8]), abs=1e-5)


def test_user_is_accepted_and_ignored(gateway, sdk):
    server, _ = gateway()
    answer = sdk(server.url + "/v1").embeddings.create(model="tiny", input="hello", user="someone")
    assert len(answer.data) == 1


# -- bad input: each a 400/422 naming the field -------------------------------------------------


@pytest.mark.parametrize(("body", "status", "names"), [
    ({"input": ""}, 422, ["body", "input", 0]),
    ({"input": []}, 422, ["body", "input"]),
    ({"input": ["hello", ""]}, 422, ["body", "input", 1]),
    ({"input": [[2, 3], []]}, 422, ["body", "input", 1]),
    ({"input": ["hello", 3]}, 422, ["body", "input"]),
    ({"input": [2, 99999, 3]}, 422, ["body", "input", 0]),
    ({"input": [[2, 3], [-1]]}, 422, ["body", "input", 1]),
    ({"input": "hello", "dimensions": 0}, 422, ["body", "dimensions"]),
    ({"input": "hello", "dimensions": HIDDEN_SIZE + 1}, 422, ["body", "dimensions"]),
    ({"input": "hello", "encoding_format": "int8"}, 422, ["body", "encoding_format"]),
    ({"input": 3.5}, 422, ["body", "input"]),
    ({"input": ["hello"] * (MAX_INPUTS + 1)}, 422, ["body", "input"]),
    ({}, 422, ["body", "input"]),
])
def test_bad_input_is_refused_naming_the_field(gateway, body, status, names):
    _, client = gateway()
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"][0]["loc"] == names
    assert _function(client)["state"] == "cold"  # refused before the model was loaded


def test_an_input_over_the_context_is_refused_saying_the_limit(gateway):
    _, client = gateway()
    r = client.post("/v1/embeddings", json={"input": ["hello", "a " * CONTEXT_LENGTH]})
    assert r.status_code == 400
    assert r.json()["detail"]["msg"] == f"input[1]: {CONTEXT_LENGTH + 2} tokens exceed the model's context of " \
                                        f"{CONTEXT_LENGTH} tokens"
    r = client.post("/v1/embeddings", json={"input": list(range(5, 5 + CONTEXT_LENGTH + 1))})
    assert r.status_code == 400 and f"context of {CONTEXT_LENGTH} tokens" in r.json()["detail"]["msg"]


def test_the_sdk_raises_bad_request_for_an_empty_input(gateway, sdk):
    server, _ = gateway()
    with pytest.raises(openai.UnprocessableEntityError):
        sdk(server.url + "/v1").embeddings.create(model="tiny", input="")


def test_an_unknown_model_is_404_naming_the_served_one(gateway, tiny_embed):
    _, client = gateway()
    r = client.post("/v1/embeddings", json={"input": "hello", "model": "org/none"})
    assert r.status_code == 404 and tiny_embed in r.json()["detail"]["msg"]


# -- lifecycle, pricing, metering, /v1/models ---------------------------------------------------


def test_the_function_loads_on_demand_and_scales_to_zero(gateway, sdk):
    server, client = gateway(scaling=Scaling(idle_timeout=0.2))
    assert _function(client)["state"] == "cold"
    sdk(server.url + "/v1").embeddings.create(model="tiny", input="hello")
    assert wait_for(lambda: _function(client)["state"] == "cold")
    answer = sdk(server.url + "/v1").embeddings.create(model="tiny", input="hello again")
    assert len(answer.data) == 1 and _function(client)["loads"] == 2


def test_a_priced_function_quotes_and_bills_the_input_tokens(gateway, tmp_path):
    _, client = gateway(settings={"sections": [PricingSettings(ledger=str(tmp_path / "usage.db"))]},
                        price=Price(price_per_unit=1000))
    r = client.post("/v1/embeddings", json={"input": ["hello world", "the quick brown fox"]})
    assert r.status_code == 200
    tokens = r.json()["usage"]["prompt_tokens"]
    assert tokens == 4 + 6
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == (str(tokens), str(tokens * 1000))
    assert client.post("/v1/embeddings", json={"input": ""}).status_code == 422  # refused: not billed
    [total] = client.get("/usage").json()["usage"]
    assert (total["function"], total["requests"], total["units"], total["wei"]) == (
        _function(client)["name"], 1, tokens, str(tokens * 1000))
    assert total["prompt_tokens"] == tokens


def test_models_lists_the_embedding_functions(warmgate_server, tiny_embed, tiny_model_dir):
    chat = str(tiny_model_dir(get_pipelines()["llm"]))
    _, client = warmgate_server(Settings(functions=[FunctionConfig(pipeline="llm", model_id=chat),
                                                    FunctionConfig(pipeline="embeddings", model_id=tiny_embed)]))
    cards = {card["id"]: card for card in client.get("/v1/models").json()["data"]}
    assert cards[tiny_embed]["pipeline"] == "embeddings" and cards[chat]["pipeline"] == "llm"
    assert cards[tiny_embed]["object"] == "model" and cards[tiny_embed]["state"] == "cold"


# -- the relay to an OpenAI-compatible server ---------------------------------------------------


@pytest.fixture
def upstream(warmgate_server, tiny_embed):
    """The engine: another gateway serving the tiny encoder, an OpenAI-compatible server."""
    server, _ = warmgate_server(Settings(functions=[FunctionConfig(pipeline="embeddings", model_id=tiny_embed)]))
    return server.url


def test_the_relay_forwards_inputs_dimensions_and_format_to_the_engine(warmgate_server, upstream, tiny_embed, sdk):
    config = FunctionConfig(pipeline="embeddings", model_id=tiny_embed,
                            options={"backend": "vllm", "url": upstream + "/v1"})
    server, _ = warmgate_server(Settings(functions=[config]))
    relayed, direct = sdk(server.url + "/v1"), sdk(upstream + "/v1")
    for kwargs in ({"input": ["hello", "the quick brown fox"]}, {"input": [[2, 145, 3]], "encoding_format": "float"},
                   {"input": "hello", "dimensions": 8, "encoding_format": "float"}):
        via, straight = relayed.embeddings.create(model="", **kwargs), direct.embeddings.create(model="", **kwargs)
        assert [d.embedding for d in via.data] == [d.embedding for d in straight.data]
        assert via.usage.prompt_tokens == straight.usage.prompt_tokens > 0
        assert via.model == tiny_embed


def test_the_relay_passes_the_engines_refusals_on_as_400(warmgate_server, upstream, tiny_embed):
    config = FunctionConfig(pipeline="embeddings", model_id=tiny_embed, options={"backend": "vllm", "url": upstream})
    _, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/v1/embeddings", json={"input": "a " * CONTEXT_LENGTH})
    assert r.status_code == 400 and "the engine answered 400" in r.json()["detail"]["msg"]
    assert f"context of {CONTEXT_LENGTH} tokens" in r.json()["detail"]["msg"]


def test_a_priced_relay_counts_with_its_tokenizer_option(warmgate_server, upstream, tiny_embed):
    config = FunctionConfig(pipeline="embeddings", model_id=tiny_embed, price=Price(price_per_unit=7),
                            options={"backend": "vllm", "url": upstream, "tokenizer": tiny_embed})
    _, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/v1/embeddings", json={"input": "hello world"})
    assert r.status_code == 200 and r.headers["x-warmgate-units"] == "4" == str(r.json()["usage"]["prompt_tokens"])


def test_a_priced_relay_without_a_tokenizer_is_a_config_error_at_startup(tiny_embed):
    config = FunctionConfig(pipeline="embeddings", model_id=tiny_embed, price=Price(price_per_unit=7),
                            options={"backend": "vllm", "url": "http://127.0.0.1:9"})
    app = create_app(Settings(functions=[config]))
    with pytest.raises(ConfigError, match="options.tokenizer"):
        embeddings.track(app)  # the startup hook: the gateway does not start


def test_the_demo_function_prices_with_the_demo_models_tokenizer(warmgate_server, tiny_embed, tmp_path):
    """The demo profile's function: its model id names no directory, so the tokenizer that
    counts before the quote is the demo build's (found in the cache, as the loader finds it)."""
    from warmgate.core.config import load_settings, plan_functions
    from warmgate.core.settings import GatewaySettings

    [planned] = [f for f in plan_functions(load_settings(None, profile="demo", env={}), get_pipelines())
                 if f.pipeline == "embeddings"]
    assert planned.demo and planned.price is not None and planned.model_id == "warmgate-demo/tiny-embed"
    shutil.copytree(tiny_embed, tmp_path / "demo" / Path(tiny_embed).name)  # built once per session
    settings = Settings(gateway=GatewaySettings(cache_dir=str(tmp_path)), functions=[planned],
                        sections=[PricingSettings(ledger="off")])
    _, client = warmgate_server(settings)
    r = client.post("/v1/embeddings", json={"model": "warmgate-demo/tiny-embed", "input": "hello world"})
    assert r.status_code == 200 and r.headers["x-warmgate-units"] == "4"
    assert r.json()["model"] == "warmgate-demo/tiny-embed"
    assert client.post("/v1/embeddings", json={"input": "a " * CONTEXT_LENGTH}).status_code == 400


def test_a_model_that_is_not_there_is_a_503_naming_it(warmgate_server, tmp_path):
    missing = str(tmp_path / "no-such-model")
    _, client = warmgate_server(Settings(functions=[FunctionConfig(pipeline="embeddings", model_id=missing)]))
    r = client.post("/v1/embeddings", json={"input": "hello"})
    assert r.status_code == 503 and "cannot load its tokenizer" in r.json()["detail"]["msg"]
    assert missing in r.json()["detail"]["msg"]


class VllmShaped:
    """An upstream answering as vLLM's OpenAI server does for a pooling model: its model card
    with ``max_model_len``, ``data`` not necessarily in input order, errors as
    ``{"error": {"message", "type", "code"}}``. Records the bodies it got."""

    served = "BAAI/bge-m3"

    def __init__(self):
        self.bodies = []

    def app(self):
        from litestar import Litestar, Request, Response, get, post

        @get("/v1/models", sync_to_thread=False)
        def models() -> dict:
            return {"object": "list", "data": [{"id": self.served, "object": "model", "max_model_len": 8192}]}

        @post("/v1/embeddings", status_code=200)
        async def embeddings(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)
            if body.get("dimensions"):
                return Response({"error": {"message": "Model \"BAAI/bge-m3\" does not support matryoshka "
                                           "representation, changing output dimensions will lead to poor results.",
                                           "type": "BadRequestError", "param": None, "code": 400}}, status_code=400)
            vectors = [[float(i), 1.0] for i in range(len(body["input"]))]
            data = [{"index": i, "object": "embedding",
                     "embedding": base64.b64encode(struct.pack("<2f", *v)).decode()
                     if body["encoding_format"] == "base64" else v} for i, v in enumerate(vectors)]
            return Response({"id": "embd-1", "object": "list", "created": 0, "model": self.served,
                             "data": data[::-1], "usage": {"prompt_tokens": 9, "total_tokens": 9,
                                                           "completion_tokens": 0, "prompt_tokens_details": None}})

        return Litestar([models, embeddings])


def test_the_relay_speaks_to_vllm_in_its_own_shapes(warmgate_server, sdk):
    from warmgate.testing import serve

    upstream = VllmShaped()
    with serve(upstream.app()) as engine:
        config = FunctionConfig(pipeline="embeddings", model_id="BAAI/bge-m3",
                                options={"backend": "vllm", "url": engine.url + "/v1"})
        server, client = warmgate_server(Settings(functions=[config]))
        client_sdk = sdk(server.url + "/v1")
        answer = client_sdk.embeddings.create(model="BAAI/bge-m3", input=["a", "b", "c"])  # base64, decoded by the SDK
        assert [item.embedding for item in answer.data] == [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]  # in input order
        assert answer.usage.prompt_tokens == 9
        assert upstream.bodies[-1] == {"model": "BAAI/bge-m3", "encoding_format": "base64", "input": ["a", "b", "c"]}
        r = client.post("/v1/embeddings", json={"input": "a", "dimensions": 8})
        assert r.status_code == 400
        assert r.json()["detail"]["msg"].startswith("the engine answered 400: Model \"BAAI/bge-m3\" does not support "
                                                    "matryoshka")
        assert upstream.bodies[-1]["dimensions"] == 8
