"""The ``embeddings`` pipeline's ``prepare``: the input's shape checked, and its tokens counted
with the function's tokenizer, before a function is acquired (bad input never waits in a queue
or starts a model, and the price quote is the exact number of input tokens)."""

from __future__ import annotations

from typing import Any

from warmgate.core.http.errors import RequestValidationError
from warmgate.plugins.llm.embeddings import functions
from warmgate.plugins.llm.embeddings.wire import MAX_INPUTS, EmbeddingJob, EmbeddingRequest

__all__ = ["prepare_embeddings", "prompt_tokens"]


def _invalid(msg: str, *loc: str | int) -> RequestValidationError:
    return RequestValidationError.single(["body", "input", *loc], msg)


def _split(value: str | list[Any]) -> tuple[list[str] | None, list[list[int]] | None]:
    """``input`` as texts or as token-id lists; a mix of both is refused."""
    if isinstance(value, str):
        value = [value]
    if not value:
        raise _invalid("expected at least one input, got an empty list")
    if all(isinstance(item, int) for item in value):
        return None, [value]  # one input: its length is bounded by the context, not MAX_INPUTS
    if len(value) > MAX_INPUTS:
        raise _invalid(f"at most {MAX_INPUTS} inputs per request, got {len(value)}")
    kind = next((k for k in (str, list) if all(isinstance(item, k) for item in value)), None)
    if kind is None:
        raise _invalid("expected a string, a list of strings, a list of token ids or a list of lists of token "
                       "ids, not a mix")
    empty = next((i for i, item in enumerate(value) if not item), None)
    if empty is not None:
        raise _invalid("an input must not be empty", empty)
    return (value, None) if kind is str else (None, value)


def prepare_embeddings(request: EmbeddingRequest, options: dict[str, Any]) -> EmbeddingJob:
    texts, token_ids = _split(request.input)
    encoder = functions.encoder_for(options)
    if encoder is None:
        return EmbeddingJob(request=request, texts=texts, token_ids=token_ids)
    if texts is not None:
        token_ids = encoder.tokenize(texts)
    assert token_ids is not None
    encoder.check(token_ids, request.dimensions, from_client=texts is None)
    return EmbeddingJob(request=request, texts=texts, token_ids=token_ids)


def prompt_tokens(job: EmbeddingJob) -> int:
    """The quote's units: input tokens. A priced function always has a tokenizer (checked at
    startup), so texts are counted by now."""
    tokens = job.prompt_tokens
    if tokens is None:
        raise RuntimeError("a priced embeddings function got a request its tokenizer did not count")
    return tokens
