"""The Ollama LLM backend over real HTTP: the gateway on one port, a fake Ollama server (speaking
Ollama's documented API) on another, driven by the openai SDK and by httpx for the /llm SSE."""

import asyncio
import json
import socket
import time

import httpx
import openai
import pytest
from structlog.testing import capture_logs

import warmgate
from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Scaling
from warmgate.plugins.llm.backend import get_backends
from warmgate.plugins.llm.ollama_backend import DEFAULT_HOST, OllamaError, load_ollama
from warmgate.plugins.llm.ollama_names import OLLAMA_NAMES, ollama_name
from warmgate.testing import wait_for

from .fake_ollama import FakeModel, run_fake_ollama

LLAMA_ID = "meta-llama/Meta-Llama-3.1-8B-Instruct"
LLAMA = "llama3.1:8b"
PROMPT = "warm gates open fast for every llama"


class OllamaPlugin:
    @warmgate.hookimpl
    def register_llm_backends(self, register):
        register("ollama", load_ollama)


@pytest.fixture
def ollama_backend(register_plugin):
    """The backend under its own name, whether or not the llm plugin registers it already."""
    if "ollama" not in get_backends():
        register_plugin(OllamaPlugin(), "test-ollama-backend")


@pytest.fixture
def fake():
    """A fake Ollama that can pull llama3.1:8b but has nothing local yet."""
    with run_fake_ollama(library=[FakeModel(name=LLAMA)]) as server:
        yield server


@pytest.fixture
def gateway(fake, warmgate_server, ollama_backend):
    """``gateway(model_id=..., **function_config)``: the gateway with one Ollama-backed LLM function.
    Depends on ``fake`` first so the fake outlives the gateway (which unloads on shutdown)."""

    def start(model_id=LLAMA_ID, options=None, **config):
        options = {"backend": "ollama", "host": fake.url, **(options or {})}
        function = FunctionConfig(pipeline="llm", model_id=model_id, options=options, **config)
        return warmgate_server(Settings(functions=[function]))

    return start


def _chat(content=PROMPT, **body):
    return {"messages": [{"role": "user", "content": content}], **body}


def _sse_data(lines):
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def _function(client):
    [function] = [f for f in client.get("/functions").json()["functions"] if f["pipeline"] == "llm"]
    return function



def _closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- name mapping -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_id", "name"), [
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama3.1:8b"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral:7b"),
    ("google/gemma-2-9b-it", "gemma2:9b"),
    ("meta-llama/Meta-Llama-3.1-70B-Instruct", "llama3.1:70b"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b"),
    ("meta-llama/Llama-3.1-70B-Instruct", "llama3.1:70b"),
    ("meta-llama/Llama-3.2-1B-Instruct", "llama3.2:1b"),
    ("meta-llama/Llama-3.2-3B-Instruct", "llama3.2:3b"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5:0.5b"),
    ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5:72b"),
    ("microsoft/Phi-3.5-mini-instruct", "phi3.5:3.8b"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral:8x7b"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek-r1:8b-llama-distill-q4_K_M"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1:32b-qwen-distill-q4_K_M"),
])
def test_table_maps_hugging_face_ids_to_ollama_names(model_id, name):
    assert ollama_name(model_id) == name


def test_table_covers_every_qwen25_instruct_size_and_holds_only_ollama_tags():
    for size in ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"):
        assert ollama_name(f"Qwen/Qwen2.5-{size}-Instruct") == f"qwen2.5:{size.lower()}"
    for hf_id, name in OLLAMA_NAMES.items():
        assert "/" in hf_id and ":" not in hf_id
        assert ":" in name and "/" not in name, name


def test_lookup_ignores_case():
    assert ollama_name("META-LLAMA/meta-llama-3.1-8b-instruct") == "llama3.1:8b"
    assert ollama_name("  google/Gemma-2-9B-IT ") == "gemma2:9b"


def test_overrides_come_first_and_ignore_case():
    overrides = {"Meta-Llama/Meta-Llama-3.1-8B-Instruct": "llama3.1:8b-instruct-q8_0", "acme/house": "house:1b"}
    assert ollama_name(LLAMA_ID, overrides) == "llama3.1:8b-instruct-q8_0"
    assert ollama_name("ACME/House", overrides) == "house:1b"
    assert ollama_name("google/gemma-2-9b-it", overrides) == "gemma2:9b"  # the table still answers the rest


@pytest.mark.parametrize(("model_id", "name"), [
    ("bartowski/Llama-3.2-1B-Instruct-GGUF", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF"),
    ("bartowski/Llama-3.2-1B-Instruct-gguf:Q8_0", "hf.co/bartowski/Llama-3.2-1B-Instruct-gguf:Q8_0"),
    ("hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_M", "hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_M"),
    ("llama3.2:3b", "llama3.2:3b"),
    ("qwen2.5-coder:7b-instruct-q4_K_M", "qwen2.5-coder:7b-instruct-q4_K_M"),
])
def test_gguf_repos_use_hf_co_and_ollama_names_pass_through(model_id, name):
    assert ollama_name(model_id) == name


@pytest.mark.parametrize("model_id", ["acme/unknown-model", "llama3.2", "acme/model:tag", ""])
def test_unmapped_ids_raise_a_value_error_naming_them(model_id):
    with pytest.raises(ValueError, match=f"no Ollama name for model id {model_id!r}.*options.names"):
        ollama_name(model_id)


# -- load (cold start) ------------------------------------------------------------------------------


def test_cold_start_pulls_the_missing_model_once_logging_progress_then_chats(gateway, fake):
    server, client = gateway()
    assert fake.local == {}
    with capture_logs() as logs:
        first = client.post("/llm", json=_chat(max_tokens=50))
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["content"] == PROMPT
    assert [body["model"] for body in fake.requests("/api/pull")] == [LLAMA]
    assert [body["model"] for body in fake.requests("/api/show")] == [LLAMA, LLAMA]  # 404, then after the pull
    progress = [e for e in logs if e["event"] == "ollama_pull_progress"]
    assert progress[0]["status"] == "pulling manifest" and progress[-1]["status"] == "success"
    downloads = [e for e in progress if e.get("total")]
    assert downloads and downloads[-1]["completed"] == downloads[-1]["total"]
    assert all(e["host"] == fake.url and e["model"] == LLAMA for e in progress)
    assert any(e["event"] == "ollama_pull_finished" for e in logs)

    second = client.post("/llm", json=_chat("again please", max_tokens=50))
    assert second.json()["choices"][0]["message"]["content"] == "again please"
    assert len(fake.requests("/api/pull")) == 1 and len(fake.requests("/api/show")) == 2
    assert [chat.model for chat in fake.chats] == [LLAMA, LLAMA]
    assert _function(client)["loads"] == 1


def test_local_model_is_not_pulled_and_show_sets_the_context_length(gateway, fake):
    fake.add_local(FakeModel(name="gemma2:9b", family="gemma2", context_length=32))
    _, client = gateway(model_id="google/gemma-2-9b-it")
    too_long = client.post("/llm", json=_chat(max_tokens=40))
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["body", "max_tokens"]
    assert "context of 32 tokens" in too_long.json()["detail"][0]["msg"]
    assert client.post("/llm", json=_chat(max_tokens=30)).status_code == 200
    assert fake.requests("/api/pull") == []
    assert fake.chats[0].model == "gemma2:9b" and fake.chats[0].body["options"]["num_predict"] == 30


def test_num_ctx_option_is_sent_and_bounds_the_context(gateway, fake):
    _, client = gateway(options={"num_ctx": 16})
    r = client.post("/llm", json=_chat(max_tokens=20))
    assert r.status_code == 422 and "context of 16 tokens" in r.json()["detail"][0]["msg"]
    assert client.post("/llm", json=_chat(max_tokens=8)).status_code == 200
    assert fake.chats[-1].body["options"]["num_ctx"] == 16


def test_host_comes_from_ollama_host_then_the_default(fake, monkeypatch):
    async def load(options):
        backend = await load_ollama(LLAMA_ID, options)
        try:
            return backend.host, backend.count_prompt_tokens([{"role": "user", "content": "hi"}])
        finally:
            await backend.close()

    monkeypatch.setenv("OLLAMA_HOST", fake.url)
    assert asyncio.run(load({})) == (fake.url, None)
    assert fake.unloads == [LLAMA]  # close() asked Ollama to unload it
    monkeypatch.delenv("OLLAMA_HOST")
    with pytest.raises(OllamaError, match=f"cannot reach Ollama at {DEFAULT_HOST} for model '{LLAMA}'"):
        asyncio.run(load({}))


# -- generation -------------------------------------------------------------------------------------


def test_sampling_options_map_onto_ollama_options(gateway, fake, sdk):
    server, client = gateway()
    completion = sdk(server.url + "/v1").chat.completions.create(
        model=LLAMA_ID, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
        temperature=0.3, top_p=0.9, max_tokens=7, seed=42, stop=["zzz"], extra_body={"top_k": 40})
    assert completion.choices[0].message.content == PROMPT
    body = fake.chats[-1].body
    assert body["model"] == LLAMA and body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}]
    assert body["options"] == {"temperature": 0.3, "top_p": 0.9, "top_k": 40, "num_predict": 7, "seed": 42,
                               "stop": ["zzz"]}
    assert body["keep_alive"] == 300  # the function's idle_timeout (default 300 s), unless options.keep_alive

    assert client.post("/llm", json=_chat(max_tokens=5, temperature=0.0, top_k=-1)).status_code == 200
    assert fake.chats[-1].body["options"] == {"temperature": 0.0, "top_p": 1.0, "num_predict": 5}


def test_stop_sequences_end_the_answer_with_finish_reason_stop(gateway, sdk):
    server, _ = gateway()
    completion = sdk(server.url + "/v1").chat.completions.create(
        model=LLAMA_ID, messages=[{"role": "user", "content": "one two three four"}], stop=[" three"])
    assert completion.choices[0].message.content == "one two"
    assert completion.choices[0].finish_reason == "stop"


def test_livepeer_stream_carries_deltas_then_usage_from_ollama_counts(gateway):
    _, client = gateway()
    with client.stream("POST", "/llm", json=_chat(max_tokens=64, stream=True)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = _sse_data(r.iter_lines())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == PROMPT
    assert len(chunks) == len(PROMPT.split()) + 1  # one delta per token, then the finish chunk
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    words = len(PROMPT.split())
    assert final["usage"] == {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words}


def test_openai_stream_reports_length_and_usage(gateway, sdk):
    server, _ = gateway()
    stream = sdk(server.url + "/v1").chat.completions.create(
        model=LLAMA_ID, messages=[{"role": "user", "content": "alpha beta gamma delta"}], max_tokens=2,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (4, 2, 6)


def test_non_streamed_chat_reports_length_and_usage(gateway, sdk):
    server, _ = gateway()
    completion = sdk(server.url + "/llm").chat.completions.create(
        model=LLAMA_ID, messages=[{"role": "system", "content": "two words"},
                                  {"role": "user", "content": "alpha beta gamma"}], max_completion_tokens=1)
    assert completion.choices[0].message.content == "alpha"
    assert completion.choices[0].finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 1)


def test_client_leaving_mid_stream_closes_the_ollama_stream(gateway, fake):
    fake.token_delay = 0.05
    _, client = gateway(max_concurrency=1)
    long_prompt = " ".join(f"w{i}" for i in range(200))
    with client.stream("POST", "/llm", json=_chat(long_prompt, max_tokens=300, stream=True)) as r:
        next(line for line in r.iter_lines() if line.startswith("data: "))  # generation is running
    assert wait_for(lambda: fake.chats[0].outcome == "disconnected"), fake.chats[0].outcome
    assert fake.chats[0].tokens_sent < 200
    assert wait_for(lambda: _function(client)["in_flight"] == 0)
    fake.token_delay = 0.0
    assert client.post("/llm", json=_chat("next one", max_tokens=5)).json()["choices"][0]["message"]["content"] \
        == "next one"


# -- failures ---------------------------------------------------------------------------------------


def test_ollama_error_mid_stream_becomes_a_clear_error(gateway, fake, sdk):
    server, client = gateway()
    assert client.post("/llm", json=_chat(max_tokens=5)).status_code == 200  # loaded and fine
    fake.fail_after = 2
    expected = f"Ollama at {fake.url} failed generating with model '{LLAMA}': {fake.fail_message}"
    with client.stream("POST", "/llm", json=_chat(stream=True)) as r:
        lines = list(r.iter_lines())
    assert "event: error" in lines
    data = _sse_data(lines)
    assert "".join(json.loads(d)["choices"][0]["delta"]["content"] for d in data[:-1]) == "warm gates"
    assert expected in json.loads(data[-1])["detail"]["msg"]
    with pytest.raises(openai.APIError, match="CUDA error: out of memory"):
        list(sdk(server.url + "/v1").chat.completions.create(
            model=LLAMA_ID, messages=[{"role": "user", "content": PROMPT}], stream=True))
    r = client.post("/llm", json=_chat())
    assert r.status_code == 502 and expected in r.json()["detail"]["msg"]  # the engine failed: a bad gateway
    assert [chat.outcome for chat in fake.chats] == ["done", "error", "error", "error"]


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_going_down_after_the_load_is_a_503_with_retry_after(warmgate_server, ollama_backend, sdk, stream):
    with run_fake_ollama(local=[FakeModel(name=LLAMA)]) as ollama:
        function = FunctionConfig(pipeline="llm", model_id=LLAMA_ID, options={"backend": "ollama", "host": ollama.url})
        server, client = warmgate_server(Settings(functions=[function]))
        assert client.post("/llm", json=_chat(max_tokens=3)).status_code == 200  # loaded
    with pytest.raises(openai.APIStatusError) as failure:  # a stream sends nothing before Ollama's first byte
        sdk(server.url + "/v1").chat.completions.create(
            model=LLAMA_ID, messages=[{"role": "user", "content": PROMPT}], stream=stream)
    assert failure.value.status_code == 503 and int(failure.value.response.headers["retry-after"]) >= 1
    assert f"cannot reach Ollama at {ollama.url}" in failure.value.response.read().decode()


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_not_answering_in_time_is_a_504(gateway, fake, sdk, stream):
    server, client = gateway(options={"timeout": 0.5})
    assert client.post("/llm", json=_chat(max_tokens=3)).status_code == 200  # loaded
    fake.token_delay = 3
    with pytest.raises(openai.APIStatusError) as failure:
        sdk(server.url + "/v1").chat.completions.create(
            model=LLAMA_ID, messages=[{"role": "user", "content": PROMPT}], stream=stream)
    assert failure.value.status_code == 504 and "did not answer in time" in failure.value.response.read().decode()


def test_ollama_failing_mid_stream_bills_the_tokens_it_delivered(fake, warmgate_server, ollama_backend, tmp_path):
    from warmgate.core.settings import Price
    from warmgate.plugins.pricing.settings import PricingSettings

    function = FunctionConfig(pipeline="llm", model_id=LLAMA_ID, price=Price(price_per_unit=1000),
                              options={"backend": "ollama", "host": fake.url})
    _, client = warmgate_server(Settings(functions=[function], sections=[PricingSettings(ledger=str(tmp_path / "u.db"))]))
    fake.fail_after = 2
    r = client.post("/llm", json=_chat(max_tokens=10, stream=True))
    assert "event: error" in r.text
    assert wait_for(lambda: client.get("/usage").json()["usage"])
    [total] = client.get("/usage").json()["usage"]
    assert (total["failed"], total["units"], total["wei"], total["completion_tokens"]) == (1, 2, "2000", 2)


def test_unreachable_host_fails_the_load_fast_with_503_naming_host_and_model(gateway):
    host = _closed_port_url()
    _, client = gateway(options={"host": host})
    started = time.monotonic()
    r = client.post("/llm", json=_chat())
    assert time.monotonic() - started < 10
    assert r.status_code == 503
    msg = r.json()["detail"]["msg"]
    assert f"cannot reach Ollama at {host} for model '{LLAMA}'" in msg and LLAMA_ID in msg
    assert _function(client)["state"] == "error"


def test_model_ollama_cannot_pull_fails_the_load_with_ollamas_reason(gateway, fake):
    _, client = gateway(model_id="nosuch:7b")
    r = client.post("/llm", json=_chat())
    assert r.status_code == 503
    msg = r.json()["detail"]["msg"]
    assert f"Ollama at {fake.url} could not pull model 'nosuch:7b': pull model manifest: file does not exist" in msg
    assert fake.chats == []


def test_unmapped_model_id_fails_the_load_and_names_overrides_fix_it(gateway, fake):
    _, client = gateway(model_id="acme/house-model")
    r = client.post("/llm", json=_chat())
    assert r.status_code == 503 and "no Ollama name for model id 'acme/house-model'" in r.json()["detail"]["msg"]
    assert fake.calls == []


def test_names_option_maps_a_house_model_id(gateway, fake):
    _, client = gateway(model_id="acme/house-model", options={"names": {"ACME/House-Model": LLAMA}})
    r = client.post("/llm", json=_chat(max_tokens=3))
    assert r.status_code == 200 and r.json()["model"] == "acme/house-model"
    assert r.json()["choices"][0]["message"]["content"] == "warm gates open"
    assert fake.chats[0].model == LLAMA


# -- scale to zero ----------------------------------------------------------------------------------


def test_keep_alive_is_left_to_ollama_when_the_function_never_idles_out(gateway, fake):
    _, client = gateway(scaling=Scaling(idle_timeout=0))
    assert client.post("/llm", json=_chat(max_tokens=3)).status_code == 200
    assert "keep_alive" not in fake.chats[-1].body


def test_idle_unload_asks_ollama_to_unload_and_keep_alive_is_forwarded(gateway, fake):
    _, client = gateway(scaling=Scaling(idle_timeout=0.2), options={"keep_alive": "45s"})

    def running():
        return [m["name"] for m in httpx.get(fake.url + "/api/ps").json()["models"]]

    assert client.post("/llm", json=_chat(max_tokens=3)).status_code == 200
    assert fake.chats[0].body["keep_alive"] == "45s"
    assert wait_for(lambda: _function(client)["state"] == "cold")
    assert fake.unloads == [LLAMA]
    assert running() == []
    assert client.post("/llm", json=_chat(max_tokens=3)).status_code == 200  # loads again, no second pull
    assert running() == [LLAMA]
    assert len(fake.requests("/api/pull")) == 1 and _function(client)["loads"] == 2
