"""OpenAI's legacy text completions on an LLM function: each prompt, raw (no chat template), is
``n`` single generations through the backend (``choices.py``), indexed prompt by prompt as
OpenAI does; ``echo`` puts the prompt before each choice's text. Keys, quotes, holds,
settlement and the ledger are the chat route's: one account per request, summed over choices."""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec

from warmgate.core.http.errors import ContextExceeded
from warmgate.plugins.llm.backend import Delta, GenerationParams, Usage
from warmgate.plugins.llm.capabilities import check_supported
from warmgate.plugins.llm.choices import choice_params
from warmgate.plugins.llm.completions_wire import CompletionRequest, TextChoice, TextCompletion, text_logprobs
from warmgate.plugins.llm.runner import LLMRunner, _openai_error, _openai_usage, _sse, _Stream

__all__ = ["complete_text", "quoted_tokens"]


def quoted_tokens(request: CompletionRequest) -> int:
    """The quote: every choice of every prompt may use all of ``max_tokens``."""
    return request.max_tokens * request.n * len(request.prompts)


def _params(request: CompletionRequest) -> GenerationParams:
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    return GenerationParams(
        messages=[], prompt=request.prompts[0], max_tokens=request.max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p, seed=request.seed, stop=stop,
        logprobs=request.logprobs is not None, top_logprobs=request.logprobs,
        presence_penalty=request.presence_penalty or 0.0, frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=request.logit_bias or {}, unknown_fields=getattr(request, "unknown_fields", {}),
    )


def _check_context(runner: LLMRunner, prompts: list[str], max_tokens: int) -> None:
    """422 on ``max_tokens`` when a prompt and it overflow the context, where the backend can
    count a raw prompt; an engine that cannot counts for itself."""
    limit = runner.backend.context_length
    count = getattr(runner.backend, "count_raw_prompt_tokens", None)
    if not limit or count is None:
        return
    for i, prompt in enumerate(prompts):
        tokens = count(prompt)
        if tokens + max_tokens > limit:
            where = "the prompt" if len(prompts) == 1 else f"prompt {i}"
            raise ContextExceeded.single(["body", "max_tokens"], f"max_tokens {max_tokens} plus {where}'s "
                                                f"{tokens} tokens exceeds the model's context of {limit} tokens")


async def complete_text(runner: LLMRunner, request: CompletionRequest) -> Any:
    base = _params(request)
    check_supported(base, runner.backend, runner.model_id)  # logprobs on a backend without them: 400 naming it
    prompts = request.prompts
    _check_context(runner, prompts, request.max_tokens)
    choices = [choice_params(msgspec.structs.replace(base, prompt=prompt), i)
               for prompt in prompts for i in range(request.n)]
    account = msgspec.structs.replace(base, n=len(choices))

    def echoed(index: int) -> str:
        return prompts[index // request.n] if request.echo else ""

    ident, created = f"cmpl-{os.urandom(12).hex()}", int(time.time())

    def completion(choices: list[TextChoice], usage: Usage | None = None) -> TextCompletion:
        return TextCompletion(id=ident, created=created, model=runner.model_id, choices=choices,
                              usage=None if usage is None else _openai_usage(usage))

    top = bool(request.logprobs)  # 0: the chosen tokens' logprobs without candidates
    if not request.stream:
        answers, usage = await runner._answers(account, choices, per_prompt=request.n)
        return completion([TextChoice(index=i, text=echoed(i) + answer.text, finish_reason=answer.finish_reason,
                                      logprobs=text_logprobs(answer.logprobs, 0, top)[0])
                           for i, answer in enumerate(answers)], usage)

    offsets = [0] * len(choices)  # each choice's text so far, where its next token starts

    def render(index: int, delta: Delta) -> bytes:
        logprobs, offsets[index] = text_logprobs(delta.logprobs, offsets[index], top)
        return _sse(completion([TextChoice(index=index, text=delta.text, finish_reason=delta.finish_reason,
                                           logprobs=logprobs)]))

    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    first, deltas = await runner._open_choices(choices)
    opening = [_sse(completion([TextChoice(index=i, text=echoed(i))])) for i in range(len(choices)) if echoed(i)]
    body = runner._indexed_stream(account, first, deltas, opening=opening, render=render, error=_openai_error,
                                  closing=lambda usage: [_sse(completion([], usage))] if include_usage else [],
                                  per_prompt=request.n)
    return _Stream(body, deltas)
