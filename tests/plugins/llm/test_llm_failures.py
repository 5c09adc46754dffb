"""What a failing engine costs and answers, through the vLLM relay against a real engine
process (``openai_upstream.py``) that dies mid-stream, before its first token, hangs, or sends no
usage: the ledger row and the key's balance carry exactly what the client received."""

import sqlite3

import openai
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import AuthSettings, Price
from warmgate.plugins.pricing.keys import KeyStore
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import wait_for

from .openai_upstream import run_upstream

PRICE = 1000  # wei per token
CREDIT = 100_000
MODEL = "org/upstream-model"  # no tokenizer of that name on this machine


@pytest.fixture(scope="session")
def tiny_chat(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["llm"]))


@pytest.fixture
def gateway(warmgate_server, tmp_path):
    """``gateway(url, model_id=..., settle=..., **options)``: a priced relay function and a key
    with ``CREDIT`` wei -> (server, httpx client, the key's token, the ledger path)."""

    def start(url, model_id=MODEL, settle="quote", **options):
        ledger = tmp_path / "usage.sqlite"
        config = FunctionConfig(pipeline="llm", model_id=model_id, price=Price(price_per_unit=PRICE, settle=settle),
                                options={"backend": "vllm", "url": url, **options})
        settings = Settings(functions=[config], auth=AuthSettings(keys=True, api_keys=["operator"]),
                            sections=[PricingSettings(ledger=str(ledger))])
        server, client = warmgate_server(settings)
        store = KeyStore(ledger)
        _, token = store.create(credit=CREDIT)
        store.close()
        return server, client, token, ledger

    return start


@pytest.fixture
def sdk():
    """``sdk(base_url, token)``: an ``openai.OpenAI`` client without retries, closed after the test."""
    clients = []

    def make(base_url, token):
        client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _rows(ledger, count=1):
    """The ledger's rows once ``count`` are in: a failed stream's row is committed just before
    its last byte, which comes after the error event the client already raised on."""

    def read():
        with sqlite3.connect(ledger) as db:
            return db.execute("SELECT status, units, wei, completion_tokens FROM usage ORDER BY time").fetchall()

    assert wait_for(lambda: len(read()) >= count)
    return read()


def _error_text(error):
    """The body of an HTTP error the SDK raised (for a stream it does not read the body itself)."""
    return error.response.read().decode()


def _balance(client, token):
    balance = client.get("/usage", headers={"Authorization": f"Bearer {token}"}).json()["balance"]
    return int(balance["available_wei"]), int(balance["held_wei"])


def _stream_until_error(sdk_client, **body):
    """The content the SDK received before the stream failed, and the error it raised."""
    received = []
    with pytest.raises(openai.APIError) as failure:
        for chunk in sdk_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                        stream=True, **body):
            received += [choice.delta.content or "" for choice in chunk.choices]
    return "".join(received), failure.value


@pytest.mark.parametrize("settle", ["quote", "usage"])
def test_a_stream_cut_off_mid_way_bills_only_the_tokens_delivered(gateway, sdk, settle):
    with run_upstream(MODEL, "--die-after", "3") as upstream:
        server, client, token, ledger = gateway(upstream.url, settle=settle)
        text, error = _stream_until_error(sdk(server.url + "/v1", token), max_tokens=10)
        upstream.process.wait()
    assert text == " t0 t1 t2"  # three tokens reached the client, then the engine died
    assert not isinstance(error, openai.APIStatusError)  # the 200 was sent: the stream's error event
    assert _rows(ledger) == [(502, 3, str(3 * PRICE), 3)]  # failed, 3 delivered, never the 10-token quote
    assert _balance(client, token) == (CREDIT - 3 * PRICE, 0)
    [total] = client.get("/usage", headers={"Authorization": f"Bearer {token}"}).json()["usage"]
    assert (total["failed"], total["wei"], total["completion_tokens"]) == (1, str(3 * PRICE), 3)


def test_the_livepeer_stream_cut_off_mid_way_bills_the_tokens_delivered(gateway):
    with run_upstream(MODEL, "--die-after", "2") as upstream:
        _, client, token, ledger = gateway(upstream.url)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "stream": True}
        r = client.post("/llm", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "event: error" in r.text and "broke off" in r.text
    assert _rows(ledger) == [(502, 2, str(2 * PRICE), 2)]
    assert _balance(client, token) == (CREDIT - 2 * PRICE, 0)


def test_an_engine_dying_before_its_first_token_is_an_http_error_billed_nothing(gateway, sdk):
    with run_upstream(MODEL, "--die-after", "0") as upstream:
        server, client, token, ledger = gateway(upstream.url)
        with pytest.raises(openai.APIStatusError) as failure:  # nothing was sent before the engine's first token
            sdk(server.url + "/v1", token).chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=10, stream=True)
        upstream.process.wait()
    assert failure.value.status_code == 502 and "broke off" in _error_text(failure.value)
    assert _rows(ledger) == [(502, 10, "0", None)]
    assert _balance(client, token) == (CREDIT, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_an_engine_that_is_down_is_a_503_with_retry_after(gateway, sdk, stream):
    with run_upstream(MODEL) as upstream:
        server, client, token, ledger = gateway(upstream.url)
        engine = sdk(server.url + "/v1", token)
        engine.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    # the engine is gone now (killed on leaving the block); the function stays loaded
    with pytest.raises(openai.APIStatusError) as failure:
        engine.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5,
                                       stream=stream)
    assert failure.value.status_code == 503 and "unreachable" in _error_text(failure.value)
    assert int(failure.value.response.headers["retry-after"]) >= 1
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "stream": stream},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and "unreachable" in r.json()["detail"]["msg"] and "retry-after" in r.headers
    assert [row[:3] for row in _rows(ledger, 3)] == [(200, 3, str(3 * PRICE)), (503, 5, "0"), (503, 20, "0")]
    assert _balance(client, token) == (CREDIT - 3 * PRICE, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_an_engine_that_does_not_answer_in_time_is_a_504(gateway, sdk, stream):
    with run_upstream(MODEL, "--hang") as upstream:
        server, client, token, ledger = gateway(upstream.url, timeout=0.5)
        with pytest.raises(openai.APIStatusError) as failure:
            sdk(server.url + "/v1", token).chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=stream)
    assert failure.value.status_code == 504 and "did not answer in time" in _error_text(failure.value)
    assert _rows(ledger) == [(504, 5, "0", None)]


@pytest.mark.parametrize("stream", [False, True])
def test_an_engine_without_usage_is_billed_by_the_models_tokenizer(gateway, sdk, tiny_chat, stream):
    from transformers import AutoTokenizer

    with run_upstream(tiny_chat, "--no-usage") as upstream:
        server, client, token, ledger = gateway(upstream.url, model_id=tiny_chat, settle="usage")
        answer = sdk(server.url + "/v1", token).chat.completions.with_raw_response.create(
            model=tiny_chat, messages=[{"role": "user", "content": "hi"}], max_tokens=40, stream=stream)
        assert answer.headers["x-warmgate-price"] == str(40 * PRICE)
        parsed = answer.parse()
        text = ("".join(c.choices[0].delta.content or "" for c in parsed if c.choices) if stream
                else parsed.choices[0].message.content)
    assert text == " t0 t1 t2 t3 t4 t5 t6 t7"
    tokens = len(AutoTokenizer.from_pretrained(tiny_chat).encode(text, add_special_tokens=False))
    assert 8 <= tokens < 40  # neither 0 nor the quote
    assert _rows(ledger) == [(200, tokens, str(tokens * PRICE), tokens)]
    assert _balance(client, token) == (CREDIT - tokens * PRICE, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_an_engine_without_usage_and_no_tokenizer_at_hand_is_billed_the_quote(gateway, sdk, stream):
    with run_upstream(MODEL, "--no-usage") as upstream:
        server, client, token, ledger = gateway(upstream.url, settle="usage")
        answer = sdk(server.url + "/v1", token).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=6, stream=stream)
        if stream:
            list(answer)
    assert _rows(ledger) == [(200, 6, str(6 * PRICE), None)]  # never 0 for a completed answer
    assert _balance(client, token) == (CREDIT - 6 * PRICE, 0)
