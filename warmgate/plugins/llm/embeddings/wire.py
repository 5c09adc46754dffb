"""OpenAI embeddings wire types (``POST /v1/embeddings``): what the ``openai`` SDK sends and parses."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["MAX_INPUTS", "Embedding", "EmbeddingJob", "EmbeddingList", "EmbeddingRequest", "EmbeddingUsage"]


MAX_INPUTS = 2048
"""Inputs in one request, as OpenAI allows: a batch is one forward pass, so this bounds its memory."""


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """An OpenAI embeddings request. ``input`` is a string, a list of strings, a list of token
    ids or a list of lists of token ids; which of these it is is checked after decoding."""

    input: str | list[str | int | list[int]]
    model: str = ""
    encoding_format: Literal["float", "base64"] = "float"
    """``base64``: each vector as little-endian float32 bytes, base64-encoded (as OpenAI sends it)."""
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Keep the first ``dimensions`` values and renormalise (Matryoshka truncation)."""
    user: str | None = None
    """Accepted and ignored."""


class EmbeddingJob(msgspec.Struct, kw_only=True):
    """A validated request as the runner receives it: the inputs as texts or token ids, tokenised
    before the function is acquired when the function's tokenizer is known."""

    request: EmbeddingRequest
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    """Set for token-id input, and for texts the gateway tokenised itself."""

    @property
    def prompt_tokens(self) -> int | None:
        return sum(map(len, self.token_ids)) if self.token_ids is not None else None

    @property
    def count(self) -> int:
        return len(self.token_ids) if self.token_ids is not None else len(self.texts or ())


class Embedding(msgspec.Struct):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"
