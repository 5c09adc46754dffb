"""Anthropic Messages wire types (``POST /v1/messages``): what the ``anthropic`` SDK sends and parses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "AnthropicCountTokensRequest",
    "AnthropicError",
    "AnthropicErrorDetail",
    "AnthropicImageBlock",
    "AnthropicImageSource",
    "AnthropicMessage",
    "AnthropicMessageParam",
    "AnthropicMessagesRequest",
    "AnthropicTextBlock",
    "AnthropicTokenCount",
    "AnthropicTool",
    "AnthropicToolChoiceAny",
    "AnthropicToolChoiceAuto",
    "AnthropicToolChoiceNone",
    "AnthropicToolChoiceTool",
    "AnthropicToolResultBlock",
    "AnthropicToolUseBlock",
    "AnthropicUsage",
]


class AnthropicTextBlock(msgspec.Struct, tag="text", tag_field="type", kw_only=True, omit_defaults=True):
    text: str
    cache_control: dict[str, Any] | None = None
    """Accepted and ignored: prompt caching is the engine's business."""


class AnthropicImageSource(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class AnthropicImageBlock(msgspec.Struct, tag="image", tag_field="type", kw_only=True, omit_defaults=True):
    source: AnthropicImageSource
    cache_control: dict[str, Any] | None = None


class AnthropicToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type", kw_only=True, omit_defaults=True):
    id: str
    name: str
    input: dict[str, Any] = {}
    cache_control: dict[str, Any] | None = None


class AnthropicToolResultBlock(msgspec.Struct, tag="tool_result", tag_field="type", kw_only=True, omit_defaults=True):
    tool_use_id: str
    content: str | list[AnthropicTextBlock | AnthropicImageBlock] = ""
    is_error: bool = False
    cache_control: dict[str, Any] | None = None


AnthropicContentBlock = AnthropicTextBlock | AnthropicImageBlock | AnthropicToolUseBlock | AnthropicToolResultBlock


class AnthropicMessageParam(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[AnthropicContentBlock]


class AnthropicTool(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    cache_control: dict[str, Any] | None = None


class AnthropicToolChoiceAuto(msgspec.Struct, tag="auto", tag_field="type", kw_only=True):
    disable_parallel_tool_use: bool = False


class AnthropicToolChoiceAny(msgspec.Struct, tag="any", tag_field="type", kw_only=True):
    disable_parallel_tool_use: bool = False


class AnthropicToolChoiceTool(msgspec.Struct, tag="tool", tag_field="type", kw_only=True):
    name: str
    disable_parallel_tool_use: bool = False


class AnthropicToolChoiceNone(msgspec.Struct, tag="none", tag_field="type", kw_only=True):
    """``{"type": "none"}``: the model may not call a tool (no fields beyond its tag)."""


AnthropicToolChoice = AnthropicToolChoiceAuto | AnthropicToolChoiceAny | AnthropicToolChoiceTool | AnthropicToolChoiceNone


class AnthropicMessagesRequest(msgspec.Struct, kw_only=True):
    """A Messages request. ``metadata`` and ``service_tier`` change nothing about the answer and
    are ignored; ``thinking`` is refused (no backend has a thinking budget)."""

    messages: Annotated[list[AnthropicMessageParam], msgspec.Meta(min_length=1)]
    max_tokens: Annotated[int, msgspec.Meta(ge=1)]
    model: str = ""
    """Hugging Face id or alias of an LLM function; blank takes the first."""
    system: str | list[AnthropicTextBlock] | None = None
    stop_sequences: Annotated[list[str], msgspec.Meta(max_length=16)] | None = None
    stream: bool = False
    temperature: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None


class AnthropicCountTokensRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens``."""

    messages: Annotated[list[AnthropicMessageParam], msgspec.Meta(min_length=1)]
    model: str = ""
    system: str | list[AnthropicTextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None


class AnthropicTokenCount(msgspec.Struct):
    input_tokens: int


class AnthropicUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(msgspec.Struct):
    """The answer: a ``message`` with its content blocks."""

    id: str
    model: str
    content: list[AnthropicTextBlock | AnthropicToolUseBlock]
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"] | None
    stop_sequence: str | None
    usage: AnthropicUsage
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"


class AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class AnthropicError(msgspec.Struct):
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""

    error: AnthropicErrorDetail
    type: Literal["error"] = "error"
