"""``n`` > 1 on chat, on every backend (the runner fans it out into single generations): choices
and stream chunks carry their index, usage sums the choices, the quote is n × max_tokens and
the ledger row bills what the choices produced, or what was delivered when a stream fails."""

import collections

import openai
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Price
from warmgate.plugins.pricing.settings import PricingSettings

from .every_backend import BACKENDS, PRICE, ledger_rows
from .openai_upstream import ANSWER_WORDS, run_upstream

ASK = [{"role": "user", "content": "one two three"}]


def expected_completion(backend, max_tokens):
    """Each choice's completion tokens where the engine is deterministic (None: the tiny model samples)."""
    return {"vllm": min(max_tokens, ANSWER_WORDS), "ollama": min(max_tokens, 3)}.get(backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_n_choices_carry_their_index_and_usage_sums_them(priced, backend):
    sdk, client, models, ledger = priced
    raw = sdk.chat.completions.with_raw_response.create(model=models[backend], messages=ASK, n=2, max_tokens=6,
                                                        seed=5)
    assert (raw.headers["x-warmgate-units"], raw.headers["x-warmgate-price"]) == ("12", str(12 * PRICE))
    completion = raw.parse()
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.role == "assistant" and c.finish_reason in ("stop", "length") for c in completion.choices)
    usage = completion.usage
    each = expected_completion(backend, 6)
    if each is not None:
        assert [c.message.content for c in completion.choices] == [completion.choices[0].message.content] * 2
        assert usage.completion_tokens == 2 * each
    else:
        assert 2 <= usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens and usage.prompt_tokens > 0
    [row] = ledger_rows(ledger, 1)
    assert row == (200, usage.completion_tokens, str(usage.completion_tokens * PRICE), usage.prompt_tokens,
                   usage.completion_tokens)


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_n_chunks_carry_the_index_of_their_choice(priced, backend):
    sdk, client, models, ledger = priced
    chunks = list(sdk.chat.completions.create(model=models[backend], messages=ASK, n=3, max_tokens=5, stream=True,
                                              stream_options={"include_usage": True}))
    texts, roles, finishes = collections.defaultdict(str), collections.Counter(), {}
    for chunk in chunks[:-1]:
        [choice] = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        roles[choice.index] += choice.delta.role == "assistant"
        if choice.finish_reason:
            assert choice.index not in finishes
            finishes[choice.index] = choice.finish_reason
    assert roles == {0: 1, 1: 1, 2: 1} and sorted(finishes) == [0, 1, 2]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    each = expected_completion(backend, 5)
    if each is not None:
        assert len(set(texts.values())) == 1 and usage.completion_tokens == 3 * each
    [row] = ledger_rows(ledger, 1)
    assert row[1] == row[4] == usage.completion_tokens and row[3] == usage.prompt_tokens


def test_seeded_choices_are_reproducible_on_transformers(priced):
    sdk, _, models, _ = priced
    answers = [[c.message.content for c in sdk.chat.completions.create(
        model=models["transformers"], messages=ASK, n=2, max_tokens=8, temperature=1.0, seed=11).choices]
        for _ in range(2)]
    assert answers[0] == answers[1]


def test_n_with_tool_calls_gives_each_choice_its_calls(priced):
    sdk, _, models, _ = priced
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    completion = sdk.chat.completions.create(model=models["vllm"], messages=ASK, tools=[weather], n=2, max_tokens=20)
    for index, choice in enumerate(completion.choices):
        assert choice.index == index and choice.finish_reason == "tool_calls"
        assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]


@pytest.mark.parametrize("n", [0, 17])
def test_n_out_of_range_is_a_422_naming_n(priced, n):
    sdk, _, models, _ = priced
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk.chat.completions.create(model=models["vllm"], messages=ASK, n=n)
    assert refused.value.response.json()["detail"][0]["loc"] == ["body", "n"]


def test_a_stream_of_choices_cut_off_bills_what_was_delivered(warmgate_server, tmp_path):
    ledger = tmp_path / "usage.sqlite"
    with run_upstream("org/dying", "--die-after", "3") as upstream:
        config = FunctionConfig(pipeline="llm", model_id="org/dying", price=Price(price_per_unit=PRICE),
                                options={"backend": "vllm", "url": upstream.url})
        server, _ = warmgate_server(Settings(functions=[config], sections=[PricingSettings(ledger=str(ledger))]))
        received = 0
        with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as sdk:
            with pytest.raises(openai.APIError):
                for chunk in sdk.chat.completions.create(model="org/dying", messages=ASK, n=2, max_tokens=8,
                                                         stream=True):
                    received += sum(1 for choice in chunk.choices if choice.delta.content)
        upstream.process.wait()
    [(status, units, wei, _, completion)] = ledger_rows(ledger, 1)
    assert 3 <= received < 16 and status == 502  # the quote was 16 tokens
    assert (units, wei, completion) == (received, str(received * PRICE), received)
