"""The Livepeer runner's LLM wire types (``LLMRequest`` / ``LLMResponse``), as the spec has them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["LLMChoice", "LLMMessage", "LLMRequest", "LLMResponse", "LLMTokenUsage", "Role"]

Role = Literal["system", "user", "assistant", "tool"]


class LLMMessage(msgspec.Struct):
    role: Role
    content: str


class LLMRequest(msgspec.Struct, kw_only=True):
    """A chat request to a language model."""

    messages: Annotated[list[LLMMessage], msgspec.Meta(min_length=1, description="The conversation so far.")]
    model: str = ""
    """Hugging Face id or alias of the model; blank takes the default LLM function."""
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 256
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    top_k: Annotated[int, msgspec.Meta(ge=-1)] = -1
    """-1 turns top-k sampling off."""
    stream: bool = False


class LLMTokenUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LLMChoice(msgspec.Struct, omit_defaults=True):
    index: int
    finish_reason: str = ""
    delta: LLMMessage | None = None
    message: LLMMessage | None = None


class LLMResponse(msgspec.Struct):
    id: str
    model: str
    created: int
    usage: LLMTokenUsage
    choices: list[LLMChoice]
