"""Log probabilities on every backend, through the openai SDK: chat's ``logprobs.content`` with
several choices (``n``), and the legacy text completions' shape (``tokens``, ``token_logprobs``,
``top_logprobs``, ``text_offset``), whole and streamed. The tiny model computes them in process;
the relay's engine (vLLM's wire) and the fake Ollama (0.12.11's ``logprobs``) answer -0.5 - i/10
for token i, with candidates ``" c0"``, ``" c1"``..."""

import collections

import httpx
import pytest

from .every_backend import BACKENDS, ledger_rows

ASK = [{"role": "user", "content": "one two three four five"}]


def check_entries(backend, tokens, logprobs, tops, text, top):
    """The entries of one choice: one per token of its text, in order, with ``top`` candidates each."""
    assert tokens and "".join(tokens) == text
    if backend == "transformers":
        assert all(lp <= 0 for lp in logprobs)
        for candidates, logprob in zip(tops, logprobs, strict=True):
            assert 1 <= len(candidates) <= top  # tokens that decode alike share a key
            assert logprob <= max(candidates.values()) + 1e-6
    else:
        assert logprobs == pytest.approx([-0.5 - i / 10 for i in range(len(tokens))])
        assert tops == [{f" c{j}": pytest.approx(-0.1 * (j + 1)) for j in range(top)}] * len(tokens)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprobs_with_several_choices(priced, backend, stream, engines):
    sdk, _, models, ledger = priced
    answer = sdk.chat.completions.create(model=models[backend], messages=ASK, n=2, max_tokens=4, logprobs=True,
                                         top_logprobs=2, stream=stream)
    entries, texts = collections.defaultdict(list), collections.defaultdict(str)
    if stream:
        for chunk in answer:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
                entries[choice.index] += choice.logprobs.content if choice.logprobs else []
    else:
        for choice in answer.choices:
            texts[choice.index], entries[choice.index] = choice.message.content, choice.logprobs.content
    assert sorted(entries) == [0, 1]
    for index in (0, 1):
        got = entries[index]
        assert all(bytes(e.bytes).decode() == e.token for e in got)
        check_entries(backend, [e.token for e in got], [e.logprob for e in got],
                      [{t.token: t.logprob for t in e.top_logprobs} for e in got], texts[index], 2)
    if backend == "ollama":
        _, ollama = engines
        assert all(body["logprobs"] is True and body["top_logprobs"] == 2 for body in ollama.requests("/api/chat")[-2:])
    ledger_rows(ledger, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
def test_text_completion_logprobs_in_the_legacy_shape(priced, backend, stream, engines):
    sdk, _, models, ledger = priced
    prompts = ["one two three four", "five six seven eight"]
    answer = sdk.completions.create(model=models[backend], prompt=prompts, max_tokens=3, logprobs=3, stream=stream)
    parts = collections.defaultdict(lambda: {"text": "", "tokens": [], "token_logprobs": [], "top_logprobs": [],
                                             "text_offset": []})
    for choice in ([c for chunk in answer for c in chunk.choices] if stream else answer.choices):
        part = parts[choice.index]
        assert choice.logprobs is not None or choice.finish_reason is not None
        if choice.logprobs is not None:
            assert len(choice.logprobs.tokens) == len(choice.logprobs.text_offset)
            for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                part[name] += getattr(choice.logprobs, name)
        part["text"] += choice.text
    assert sorted(parts) == [0, 1]
    for part in parts.values():
        check_entries(backend, part["tokens"], part["token_logprobs"], part["top_logprobs"], part["text"], 3)
        starts = [len("".join(part["tokens"][:i])) for i in range(len(part["tokens"]))]
        assert part["text_offset"] == starts  # where each token starts in the choice's text
    if backend == "vllm":
        upstream, _ = engines
        assert httpx.get(upstream.url + "/last").json()["logprobs"] == 3  # the legacy field is a number
    if backend == "ollama":
        _, ollama = engines
        assert all(body["logprobs"] is True and body["top_logprobs"] == 3
                   for body in ollama.requests("/api/generate")[-2:])
    ledger_rows(ledger, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logprobs_zero_gives_the_chosen_tokens_without_candidates(priced, backend):
    sdk, _, models, _ = priced
    completion = sdk.completions.create(model=models[backend], prompt="one two three", max_tokens=2, logprobs=0)
    logprobs = completion.choices[0].logprobs
    assert logprobs.tokens and len(logprobs.token_logprobs) == len(logprobs.tokens)
    assert logprobs.top_logprobs is None
    assert sdk.completions.create(model=models[backend], prompt="one two", max_tokens=2).choices[0].logprobs is None
