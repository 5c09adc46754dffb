"""OpenAI chat-completions wire types: what the ``openai`` SDK sends and parses."""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from warmgate.core.http.errors import RequestValidationError
from warmgate.plugins.llm.backend import TokenLogprob
from warmgate.plugins.llm.choices import MAX_CHOICES

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Choice",
    "CompletionUsage",
    "ModelCard",
    "ModelList",
    "StreamOptions",
    "Tool",
    "ToolCall",
    "decode_chat_request",
    "decode_keeping_unknown_fields",
]

R = TypeVar("R", bound=msgspec.Struct)


class ImageURL(msgspec.Struct, kw_only=True, omit_defaults=True):
    url: str
    detail: str | None = None


class ContentPart(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class ChatMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, kw_only=True):
    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True):
    function: NamedFunction
    type: Literal["function"] = "function"


class JSONSchemaFormat(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, kw_only=True, dict=True):
    """An OpenAI chat completion request: every field of OpenAI's, checked here; whether the
    function's backend can honour it is the runner's check. ``user``, ``metadata``, ``store``,
    ``service_tier``, ``prompt_cache_key`` and ``safety_identifier`` change nothing about the
    answer and are ignored. Fields OpenAI does not define are kept in ``unknown_fields`` by
    ``decode_chat_request``."""

    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    model: str = ""
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=-1)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=16)] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[float, msgspec.Meta(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # accepted and ignored: they change nothing about generation
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


def decode_keeping_unknown_fields(body: bytes, kind: type[R]) -> R:
    """The request as ``kind`` (a ``dict=True`` struct), with the fields OpenAI does not define in
    ``unknown_fields`` (a dict), to be relayed verbatim to OpenAI-compatible engines (vLLM's
    ``min_p``, ``chat_template_kwargs``...). A request with none (the usual one) is decoded in
    one typed pass; only one that has some, or is invalid, is decoded as a dict first (which
    also gives its errors their usual shape)."""
    try:
        request = _strict_decoder(kind).decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _decode_with_unknown_fields(body, kind)
    request.unknown_fields = {}  # type: ignore[attr-defined]
    return request  # type: ignore[no-any-return]


@functools.cache
def _strict_decoder(kind: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
    """A decoder of ``kind`` that fails on a field it does not define, instead of dropping it."""
    strict = types.new_class(kind.__name__, (kind,), {"forbid_unknown_fields": True})
    strict.__module__, strict.__qualname__, strict.__doc__ = kind.__module__, kind.__qualname__, kind.__doc__
    return msgspec.json.Decoder(strict)


def _decode_with_unknown_fields(body: bytes, kind: type[R]) -> R:
    from warmgate.core.http.decode import json_body

    fields = json_body(body, dict[str, Any])
    try:
        request = msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise RequestValidationError.from_msgspec(exc) from None
    known = _known_fields(kind)
    request.unknown_fields = {k: v for k, v in fields.items() if k not in known}  # type: ignore[attr-defined]
    return request


@functools.cache
def _known_fields(kind: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(f.encode_name for f in msgspec.structs.fields(kind))


def decode_chat_request(body: bytes) -> ChatCompletionRequest:
    """The request, with the fields OpenAI does not define in ``unknown_fields``."""
    return decode_keeping_unknown_fields(body, ChatCompletionRequest)


class ResponseMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChoiceLogprobs(msgspec.Struct):
    content: list[TokenLogprob] | None
    refusal: None = None


class Choice(msgspec.Struct):
    index: int
    message: ResponseMessage
    finish_reason: str
    logprobs: ChoiceLogprobs | None = None


class CompletionUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    object: str = "chat.completion"
    system_fingerprint: None = None


class ChunkFunction(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ChunkToolCall(msgspec.Struct, omit_defaults=True):
    index: int
    function: ChunkFunction
    id: str | None = None
    type: str | None = None


class ChunkDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ChunkToolCall] | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: str = "chat.completion.chunk"
    usage: CompletionUsage | None = None
    system_fingerprint: None = None


class ModelCard(msgspec.Struct):
    id: str
    created: int
    owned_by: str
    state: str
    pipeline: str
    object: str = "model"


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


def message_text(message: ChatMessage) -> str:
    """The text of a message; text parts are joined, anything else is refused by the caller."""
    content: Any = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text or "" for part in content if part.type == "text")
