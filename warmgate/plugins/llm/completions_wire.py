"""OpenAI legacy completions wire types (``POST /v1/completions``): what the ``openai`` SDK's
``client.completions.create`` sends and parses, plain and streamed (``text_completion`` chunks)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from warmgate.core.http.errors import ClientError
from warmgate.plugins.llm.backend import TokenLogprob
from warmgate.plugins.llm.choices import MAX_CHOICES
from warmgate.plugins.llm.openai_wire import CompletionUsage, StreamOptions, decode_keeping_unknown_fields

__all__ = ["CompletionRequest", "TextChoice", "TextCompletion", "TextLogprobs", "decode_completion_request",
           "text_logprobs"]

Prompt = Annotated[str, msgspec.Meta(min_length=1)]


class CompletionRequest(msgspec.Struct, kw_only=True, dict=True):
    """A legacy text completion: the prompt is generated from as it is, without a chat template.
    A list of prompts answers ``n`` choices for each, indexed prompt by prompt. ``suffix``
    (fill-in-the-middle) is refused; ``user`` changes nothing and is ignored; fields OpenAI does
    not define are kept in ``unknown_fields`` for relays, as for chat."""

    prompt: Prompt | Annotated[list[Prompt], msgspec.Meta(min_length=1, max_length=MAX_CHOICES)]
    model: str = ""
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 16
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] = 1
    best_of: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=16)] | None = None
    echo: bool = False
    logprobs: Annotated[int, msgspec.Meta(ge=0, le=5)] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[float, msgspec.Meta(ge=-100, le=100)]] | None = None
    suffix: str | None = None
    user: str | None = None

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


def decode_completion_request(body: bytes) -> CompletionRequest:
    """The request, checked before any model loads: ``suffix``, ``echo`` with ``logprobs`` and
    a ``best_of`` that is not ``n`` are 400s, as are more generations than one request may ask for."""
    request = decode_keeping_unknown_fields(body, CompletionRequest)
    if request.suffix is not None:
        raise ClientError("`suffix`: fill-in-the-middle completions are not supported; send the text before the "
                          "gap as `prompt` alone")
    if request.echo and request.logprobs is not None:
        raise ClientError("`echo`: with `logprobs`, the prompt's own log probabilities would be asked for, which "
                          "are not computed; ask for `logprobs` without `echo`")
    if request.best_of is not None and request.best_of != request.n:
        raise ClientError("`best_of`: choosing the best of several generations is not supported; "
                          "ask for `n` choices instead")
    if len(request.prompts) * request.n > MAX_CHOICES:
        raise ClientError(f"`n`: {request.n} choices for each of {len(request.prompts)} prompts are more than the "
                          f"{MAX_CHOICES} generations one request may ask for")
    return request


class TextLogprobs(msgspec.Struct):
    """The legacy shape of log probabilities: one entry per generated token in each list, the
    ``logprobs`` most likely candidates of each step as ``{token: logprob}``, and where each
    token starts in the choice's text."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


def text_logprobs(entries: list[TokenLogprob] | None, offset: int, top: bool) -> tuple[TextLogprobs | None, int]:
    """``entries`` in the legacy shape, their offsets counted from ``offset`` (the length of the
    choice's text so far), and the offset after them; None when the request asked for none."""
    if entries is None:
        return None, offset
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    tops = [{t.token: t.logprob for t in entry.top_logprobs} for entry in entries] if top else None
    return TextLogprobs([e.token for e in entries], [e.logprob for e in entries], tops, offsets), offset


class TextChoice(msgspec.Struct):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: TextLogprobs | None = None


class TextCompletion(msgspec.Struct):
    """A whole answer, and (``choices`` one delta each, ``usage`` on the last) a stream chunk."""

    id: str
    created: int
    model: str
    choices: list[TextChoice]
    object: str = "text_completion"
    usage: CompletionUsage | None = None
    system_fingerprint: None = None
