"""The Anthropic Messages API on the LLM functions: ``POST /v1/messages`` (and its event stream)
and ``POST /v1/messages/count_tokens``, translated to and from the runner's OpenAI-shaped request
model, so keys, quotes, usage, metrics and the access log are those of every other route."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from warmgate.core.functions.spec import PipelineSpec, PriceUnit
from warmgate.core.http.errors import ClientError
from warmgate.plugins.llm import anthropic_wire as aw
from warmgate.plugins.llm import openai_wire as oa
from warmgate.plugins.llm.backend import Delta, EngineFailed, GenerationParams, Usage
from warmgate.plugins.llm.runner import LLMRunner
from warmgate.plugins.llm.wire_errors import error_handlers

__all__ = ["anthropic_specs", "messages_params"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               529: "overloaded_error"}
"""Anthropic's error type per status; any other status >= 500 is an ``api_error``."""


def render_error(status: int, message: str) -> tuple[int, aw.AnthropicError]:
    """A schema error is Anthropic's 400 and a full gateway its 529 (``OverloadedError``)."""
    status = {422: 400, 503: 529}.get(status, status)
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return status, aw.AnthropicError(aw.AnthropicErrorDetail(kind, message))


# -- request -> GenerationParams ---------------------------------------------------------


def _system(system: str | list[aw.AnthropicTextBlock] | None) -> list[dict[str, Any]]:
    if not system:
        return []
    text = system if isinstance(system, str) else "\n\n".join(block.text for block in system)
    return [{"role": "system", "content": text}]


def _image_part(block: aw.AnthropicImageBlock) -> dict[str, Any]:
    source = block.source
    if source.type == "base64":
        if not source.data or not source.media_type:
            raise ClientError("an image block with a base64 source needs `media_type` and `data`")
        url = f"data:{source.media_type};base64,{source.data}"
    else:
        if not source.url:
            raise ClientError("an image block with a url source needs `url`")
        url = source.url
    return {"type": "image_url", "image_url": {"url": url}}


def _parts(blocks: list[Any]) -> str | list[dict[str, Any]]:
    """Text and image blocks as OpenAI content: a string when all are text."""
    if all(isinstance(block, aw.AnthropicTextBlock) for block in blocks):
        return "".join(block.text for block in blocks)
    return [{"type": "text", "text": block.text} if isinstance(block, aw.AnthropicTextBlock) else _image_part(block)
            for block in blocks]


def _messages(message: aw.AnthropicMessageParam, index: int) -> list[dict[str, Any]]:
    """One Anthropic message as OpenAI messages: tool results become ``tool`` messages (first, as
    they answer the calls before), tool uses an assistant's ``tool_calls``."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    content: list[Any] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if isinstance(block, aw.AnthropicToolUseBlock):
            if message.role != "assistant":
                raise ClientError(f"messages[{index}].content[{j}]: tool_use blocks belong to assistant messages")
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": _encoder.encode(block.input).decode()}})
        elif isinstance(block, aw.AnthropicToolResultBlock):
            if message.role != "user":
                raise ClientError(f"messages[{index}].content[{j}]: tool_result blocks belong to user messages")
            result = block.content if isinstance(block.content, str) else _parts(block.content)
            results.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": result})
        else:
            content.append(block)
    out = results
    if message.role == "assistant":
        entry: dict[str, Any] = {"role": "assistant", "content": _parts(content) if content else None}
        if calls:
            entry["tool_calls"] = calls
        out.append(entry)
    elif content or not results:
        out.append({"role": "user", "content": _parts(content)})
    return out


def _tool_choice(choice: aw.AnthropicToolChoice | None) -> tuple[str | dict[str, Any] | None, bool | None]:
    """OpenAI's ``tool_choice`` and ``parallel_tool_calls``."""
    if choice is None:
        return None, None
    parallel = False if getattr(choice, "disable_parallel_tool_use", False) else None
    if isinstance(choice, aw.AnthropicToolChoiceAuto):
        return "auto", parallel
    if isinstance(choice, aw.AnthropicToolChoiceAny):
        return "required", parallel
    if isinstance(choice, aw.AnthropicToolChoiceTool):
        return {"type": "function", "function": {"name": choice.name}}, parallel
    return "none", None


def messages_params(request: aw.AnthropicMessagesRequest | aw.AnthropicCountTokensRequest) -> GenerationParams:
    """The whole Messages request as the backends' one request model."""
    if getattr(request, "thinking", None) and request.thinking.get("type") != "disabled":  # type: ignore[union-attr]
        raise ClientError("`thinking`: extended thinking is not supported by the warmgate LLM functions")
    messages = _system(request.system)
    for i, message in enumerate(request.messages):
        messages += _messages(message, i)
    tools = [{"type": "function", "function": msgspec.to_builtins(
        oa.FunctionDefinition(name=t.name, description=t.description, parameters=t.input_schema))}
             for t in request.tools or ()]
    choice, parallel = _tool_choice(request.tool_choice)
    if isinstance(request, aw.AnthropicCountTokensRequest):
        return GenerationParams(messages=messages, max_tokens=1, tools=tools, tool_choice=choice)
    return GenerationParams(
        messages=messages, max_tokens=request.max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=-1 if not request.top_k else request.top_k, stop=list(request.stop_sequences or ()),
        tools=tools, tool_choice=choice, parallel_tool_calls=parallel)


# -- answers -----------------------------------------------------------------------------


def _stop_reason(finish: str | None, stop_sequence: str | None) -> str:
    if finish == "length":
        return "max_tokens"
    if finish == "tool_calls":
        return "tool_use"
    return "stop_sequence" if stop_sequence else "end_turn"


def _message_id() -> str:
    return f"msg_{os.urandom(12).hex()}"


def _tool_input(arguments: str, name: str) -> dict[str, Any]:
    try:
        value = _decoder.decode(arguments or "{}")
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise EngineFailed(f"the model called {name!r} with arguments that are not a JSON object: {arguments!r}")
    return value


async def create_message(runner: LLMRunner, request: aw.AnthropicMessagesRequest) -> Any:
    params = messages_params(request)
    await runner.check(params, "max_tokens")
    ident = _message_id()
    if request.stream:
        return await runner.stream(params, lambda first, deltas: _events(runner, params, ident, first, deltas))
    answer = await runner.answer(params)
    content: list[Any] = [aw.AnthropicTextBlock(text=answer.text)] if answer.text else []
    calls: dict[int, list[Any]] = {}
    for piece in answer.tool_calls:  # pieces joined into whole calls, in the order of their index
        call = calls.setdefault(piece.index, [piece.id or f"toolu_{os.urandom(12).hex()}", piece.name or "", ""])
        call[2] += piece.arguments
    content += [aw.AnthropicToolUseBlock(id=i, name=name, input=_tool_input(args, name))
                for i, name, args in (calls[k] for k in sorted(calls))]
    usage = answer.usage or Usage(0, 0)
    return aw.AnthropicMessage(id=ident, model=runner.model_id, content=content,
                      stop_reason=_stop_reason(answer.finish_reason, answer.stop_sequence),  # type: ignore[arg-type]
                      stop_sequence=answer.stop_sequence, usage=aw.AnthropicUsage(usage.prompt_tokens, usage.completion_tokens))


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode({"type": kind, **payload}) + b"\n\n"


async def _events(runner: LLMRunner, params: GenerationParams, ident: str, delta: Delta,
                  deltas: AsyncGenerator[Delta]) -> AsyncGenerator[bytes]:
    """The Messages event stream: a text block, then a ``tool_use`` block per call, each opened
    when its first piece arrives and closed when the next block opens or the answer ends."""
    delivered = 0
    block = -1  # index of the open block
    open_kind: tuple[str, int] | None = None  # ("text", 0) or ("tool", call index)
    try:
        yield _event("message_start", {"message": {
            "id": ident, "type": "message", "role": "assistant", "content": [], "model": runner.model_id,
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})
        yield _event("ping", {})
        while delta.finish_reason is None:
            delivered += delta.tokens
            for piece in delta.tool_calls or ():
                if open_kind != ("tool", piece.index):
                    if open_kind is not None:
                        yield _event("content_block_stop", {"index": block})
                    block, open_kind = block + 1, ("tool", piece.index)
                    yield _event("content_block_start", {"index": block, "content_block": {
                        "type": "tool_use", "id": piece.id or f"toolu_{os.urandom(12).hex()}",
                        "name": piece.name or "", "input": {}}})
                if piece.arguments:
                    yield _event("content_block_delta", {"index": block, "delta": {
                        "type": "input_json_delta", "partial_json": piece.arguments}})
            if delta.text:
                if open_kind is None or open_kind[0] != "text":
                    if open_kind is not None:
                        yield _event("content_block_stop", {"index": block})
                    block, open_kind = block + 1, ("text", 0)
                    yield _event("content_block_start", {"index": block, "content_block": {"type": "text", "text": ""}})
                yield _event("content_block_delta", {"index": block, "delta": {"type": "text_delta", "text": delta.text}})
            delta = await anext(deltas)
        if open_kind is not None:
            yield _event("content_block_stop", {"index": block})
        usage = delta.usage or Usage(0, 0)
        yield _event("message_delta", {
            "delta": {"stop_reason": _stop_reason(delta.finish_reason, delta.stop_sequence),
                      "stop_sequence": delta.stop_sequence},
            "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}})
        yield _event("message_stop", {})
    except Exception as exc:  # headers are sent: the SDK raises an APIError on an error event
        status, reason = runner.stream_failed(params, exc, delivered)
        _, body = render_error(status, reason)
        yield b"event: error\ndata: " + _encoder.encode(body) + b"\n\n"


async def count_tokens(runner: LLMRunner, request: aw.AnthropicCountTokensRequest) -> aw.AnthropicTokenCount:
    """The chat-templated prompt's tokens by the function's tokenizer, with the tool definitions
    and earlier tool calls where the backend renders them through its chat template."""
    params = messages_params(request)
    count = await runner.count_request_tokens(params)
    if count is None:
        raise ClientError(f"the backend serving {runner.model_id} cannot count tokens (its engine does)")
    return aw.AnthropicTokenCount(count)


def _units(request: aw.AnthropicMessagesRequest) -> int:
    return request.max_tokens


def _no_units(request: Any) -> int:
    return 0


def anthropic_specs(serves: str) -> list[PipelineSpec]:
    handlers = error_handlers(render_error)
    return [
        PipelineSpec(
            name="anthropic-messages", request=aw.AnthropicMessagesRequest, response=aw.AnthropicMessage,
            serves=serves, invoke=create_message, model_field="model", price_unit=PriceUnit.TOKEN, units=_units,
            paths=("/v1/messages",), summary="Messages", operation_id="createMessage", tags=("anthropic",),
            wire="anthropic", exception_handlers=handlers,
            description="Anthropic Messages API on the LLM functions (``stream: true`` answers its event stream)."),
        PipelineSpec(
            name="anthropic-count-tokens", request=aw.AnthropicCountTokensRequest, response=aw.AnthropicTokenCount, serves=serves,
            invoke=count_tokens, model_field="model", price_unit=PriceUnit.TOKEN, units=_no_units,
            paths=("/v1/messages/count_tokens",), summary="Count tokens", operation_id="countMessageTokens",
            tags=("anthropic",), wire="anthropic", exception_handlers=handlers,
            description="The input tokens of a Messages request, by the function's tokenizer; free."),
    ]
