"""OpenAI's legacy text completions (``client.completions.create``) on every backend: the tiny
model in-process (a raw prompt, no chat template), the vLLM relay (the engine's
``/v1/completions``) and Ollama (``/api/generate`` with ``raw``, through the fake)."""

import collections

import httpx
import openai
import pytest

from .every_backend import BACKENDS, PRICE, ledger_rows
from .fake_ollama import TEMPLATE


def expected_text(backend, prompt, max_tokens):
    """What the deterministic engines answer a raw prompt (None: the tiny model samples)."""
    if backend == "vllm":  # the fake engine: " WORD0 WORD1 ..." for a prompt ending in WORD
        word = prompt.split()[-1]
        return "".join(f" {word}{i}" for i in range(min(max_tokens, 8)))
    if backend == "ollama":  # the fake: the prompt's own words, so raw (no template) shows
        return " ".join(prompt.split()[:max_tokens])
    return None


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_completion_of_a_raw_prompt(priced, backend, engines):
    sdk, _, models, ledger = priced
    upstream, ollama = engines
    raw = sdk.completions.with_raw_response.create(model=models[backend], prompt="the cat sat", max_tokens=6)
    assert (raw.headers["x-warmgate-units"], raw.headers["x-warmgate-price"]) == ("6", str(6 * PRICE))
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.model == models[backend]
    [choice] = completion.choices
    assert choice.index == 0 and choice.finish_reason in ("stop", "length")
    expected = expected_text(backend, "the cat sat", 6)
    if expected is not None:
        assert choice.text == expected
    assert 1 <= completion.usage.completion_tokens <= 6 and completion.usage.prompt_tokens > 0
    if backend == "vllm":
        sent = httpx.get(upstream.url + "/last").json()
        assert sent["prompt"] == "the cat sat" and "messages" not in sent and sent["max_tokens"] == 6
    if backend == "ollama":
        [body] = ollama.requests("/api/generate")[-1:]
        assert (body["prompt"], body["raw"], body["options"]["num_predict"]) == ("the cat sat", True, 6)
        assert TEMPLATE.split("{")[0] not in choice.text
    [row] = ledger_rows(ledger, 1)
    used = completion.usage.completion_tokens
    assert row == (200, used, str(used * PRICE), completion.usage.prompt_tokens, used)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_streamed_completion_in_text_completion_chunks(priced, backend):
    sdk, _, models, ledger = priced
    chunks = list(sdk.completions.create(model=models[backend], prompt="a b c d", max_tokens=5, stream=True,
                                         stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    expected = expected_text(backend, "a b c d", 5)
    if expected is not None:
        assert text == expected
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and 1 <= usage.completion_tokens <= 5
    [row] = ledger_rows(ledger, 1)
    assert row[1] == row[4] == usage.completion_tokens


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_list_of_prompts_with_n_answers_n_choices_per_prompt_in_order(priced, backend, stream):
    sdk, client, models, ledger = priced
    prompts = ["x y", "p q r"]
    body = {"model": models[backend], "prompt": prompts, "n": 2, "max_tokens": 4, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    texts, finishes = collections.defaultdict(str), {}
    raw = sdk.completions.with_raw_response.create(**body)
    assert raw.headers["x-warmgate-units"] == str(4 * 2 * 2)  # max_tokens x n x prompts
    if stream:
        chunks = list(raw.parse())
        for chunk in chunks[:-1]:
            [choice] = chunk.choices
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
        usage = chunks[-1].usage
    else:
        completion = raw.parse()
        assert [c.index for c in completion.choices] == [0, 1, 2, 3]
        for choice in completion.choices:
            texts[choice.index], finishes[choice.index] = choice.text, choice.finish_reason
        usage = completion.usage
    assert sorted(finishes) == [0, 1, 2, 3]
    for index in range(4):
        expected = expected_text(backend, prompts[index // 2], 4)
        if expected is not None:
            assert texts[index] == expected, index
    if backend == "vllm":
        assert (usage.prompt_tokens, usage.completion_tokens) == (2 + 3, 4 * 4)  # each prompt once
    [row] = ledger_rows(ledger, 1)
    assert (row[1], *row[3:]) == (usage.completion_tokens, usage.prompt_tokens, usage.completion_tokens)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
def test_echo_puts_the_prompt_before_the_text_and_stop_cuts_it(priced, backend, stream):
    sdk, _, models, _ = priced
    answer = sdk.completions.create(model=models[backend], prompt="one two three", echo=True, max_tokens=6,
                                    stream=stream)
    text = "".join(c.choices[0].text for c in answer if c.choices) if stream else answer.choices[0].text
    assert text.startswith("one two three")
    if backend != "transformers":
        generated = expected_text(backend, "one two three", 6)
        stop = generated[len(generated) // 2:][:3]
        cut = sdk.completions.create(model=models[backend], prompt="one two three", stop=[stop], max_tokens=6,
                                     stream=stream)
        text = "".join(c.choices[0].text for c in cut if c.choices) if stream else cut.choices[0].text
        assert text == generated[:generated.index(stop)]


def test_completions_also_answer_under_llm(priced):
    _, client, models, _ = priced
    r = client.post("/llm/completions", json={"model": models["vllm"], "prompt": "hi there", "max_tokens": 2})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == " there0 there1"


BAD = [
    ({"prompt": "hi", "n": 0}, "n"),
    ({"prompt": []}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "hi", "logprobs": 6}, "logprobs"),
    ({"prompt": "hi", "logprobs": -1}, "logprobs"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
def test_bad_input_is_a_422_naming_the_field(priced, body, field):
    _, client, models, _ = priced
    r = client.post("/v1/completions", json={"model": models["vllm"], **body})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", field]


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "hi", "suffix": "bye"}, "`suffix`"),
    ({"prompt": "hi", "best_of": 3}, "`best_of`"),
    ({"prompt": ["a", "b", "c"], "n": 6}, "`n`"),
    ({"prompt": "hi", "echo": True, "logprobs": 2}, "`echo`"),
])
def test_what_is_not_supported_is_a_400_naming_the_field(priced, body, field):
    _, client, models, _ = priced
    r = client.post("/v1/completions", json={"model": models["vllm"], **body})
    assert r.status_code == 400 and r.json()["detail"]["msg"].startswith(field), r.text


def test_a_prompt_over_the_context_is_a_422_on_max_tokens(priced):
    _, client, models, _ = priced
    r = client.post("/v1/completions", json={"model": models["transformers"], "prompt": "hi", "max_tokens": 100000})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "max_tokens"]


def test_unknown_fields_reach_the_relays_engine_verbatim(priced, engines):
    sdk, _, models, _ = priced
    upstream, _ = engines
    sdk.completions.create(model=models["vllm"], prompt="hi", max_tokens=2, seed=4,
                           extra_body={"min_p": 0.05, "repetition_penalty": 1.1})
    sent = httpx.get(upstream.url + "/last").json()
    assert (sent["min_p"], sent["repetition_penalty"], sent["seed"]) == (0.05, 1.1, 4)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.completions.create(model=models["ollama"], prompt="hi", max_tokens=2, extra_body={"min_p": 0.05})
    assert refused.value.response.json()["detail"]["msg"].startswith("unknown fields `min_p`: the ollama backend")


def test_completions_are_in_the_openapi_document(priced):
    _, client, _, _ = priced
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/v1/completions"]["post"]["operationId"] == "createCompletion"
    assert "/llm/completions" in paths


def test_the_transformers_backend_tokenizes_the_prompt_raw(priced, tiny_chat):
    from transformers import AutoTokenizer

    sdk, _, models, _ = priced
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    completion = sdk.completions.create(model=models["transformers"], prompt="the cat sat", max_tokens=2)
    chat = sdk.chat.completions.create(model=models["transformers"], max_tokens=2,
                                       messages=[{"role": "user", "content": "the cat sat"}])
    assert completion.usage.prompt_tokens == len(tokenizer("the cat sat")["input_ids"])
    assert chat.usage.prompt_tokens > completion.usage.prompt_tokens  # the chat template adds its markup


@pytest.mark.parametrize("stream", [False, True])
def test_a_key_is_billed_what_the_choices_used_and_its_hold_released(warmgate_server, engines, tmp_path, stream):
    from warmgate import FunctionConfig, Settings
    from warmgate.core.settings import AuthSettings, Price
    from warmgate.plugins.pricing.keys import KeyStore
    from warmgate.plugins.pricing.settings import PricingSettings

    upstream, _ = engines
    ledger = tmp_path / "usage.sqlite"
    config = FunctionConfig(pipeline="llm", model_id="org/relayed", price=Price(price_per_unit=PRICE, settle="usage"),
                            options={"backend": "vllm", "url": upstream.url})
    _, client = warmgate_server(Settings(functions=[config], auth=AuthSettings(keys=True, api_keys=["operator"]),
                                         sections=[PricingSettings(ledger=str(ledger))]))
    store = KeyStore(ledger)
    _, token = store.create(credit=120 * PRICE)  # one quote of 2 prompts x 2 choices x 20 tokens, not two
    store.close()
    keyed = {"Authorization": f"Bearer {token}"}
    body = {"model": "org/relayed", "prompt": ["a b", "c d"], "n": 2, "max_tokens": 20, "stream": stream,
            "stream_options": {"include_usage": True}}
    first = client.post("/v1/completions", json=body, headers=keyed)
    assert first.status_code == 200 and first.headers["x-warmgate-price"] == str(80 * PRICE)
    second = client.post("/v1/completions", json=body, headers=keyed)  # fits only because the hold came back
    assert second.status_code == 200, second.text
    rows = ledger_rows(ledger, 2)
    assert [row[1] for row in rows] == [4 * 8, 4 * 8]  # the engine answers 8 tokens a choice
    balance = client.get("/usage", headers=keyed).json()["balance"]
    assert (balance["available_wei"], balance["held_wei"]) == (str(120 * PRICE - 2 * 32 * PRICE), "0")
