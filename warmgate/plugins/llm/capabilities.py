"""What an OpenAI chat request asks of the engine, checked against what the function's backend
can do: a request that needs more gets a 400 naming the field and the backend, never an answer
that silently ignores it. Plus the checks of a request's own consistency (tool calls and tool
results that match, a ``tool_choice`` that names a tool), which hold on every backend."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import msgspec

from warmgate.core.http.errors import ClientError, RequestValidationError
from warmgate.plugins.llm.backend import GenerationParams

__all__ = ["BASIC", "FEATURES", "check_consistent", "check_supported", "requested"]

FEATURES = {
    "prompt": "raw text prompts (completions)",
    "stop": "stop sequences",
    "seed": "a sampling seed",
    "image_content": "image content parts",
    "tools": "tool calling",
    "tool_choice": "forcing a tool call (tool_choice `required` or a named function)",
    "response_format": "structured output (response_format)",
    "logprobs": "log probabilities",
    "n": "several choices (n > 1) natively",
    "penalties": "presence and frequency penalties",
    "logit_bias": "logit_bias",
}
"""Every feature a backend may declare in its ``features``, with how an error names it. ``n`` is
never required: the runner fans several choices out into single generations (``choices.py``)."""

BASIC = frozenset({"stop", "seed"})
"""What a backend that declares nothing is assumed to honour (besides plain text chat)."""


def requested(params: GenerationParams) -> Iterator[tuple[str, str]]:
    """``(feature, field)`` for each feature the request uses beyond plain text chat."""
    if params.prompt is not None:
        yield "prompt", "prompt"
    for i, message in enumerate(params.messages):
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind != "text":
                    yield ("image_content" if kind == "image_url" else f"content:{kind}",
                           f"messages[{i}].content[{j}]")
        if message.get("tool_calls"):
            yield "tools", f"messages[{i}].tool_calls"
        if message.get("role") == "tool":
            yield "tools", f"messages[{i}]"
    if params.tools:
        yield "tools", "tools"
        if params.tool_choice == "required" or isinstance(params.tool_choice, dict):
            yield "tool_choice", "tool_choice"
    if params.response_format is not None and params.response_format.get("type") != "text":
        yield "response_format", "response_format"
    if params.logprobs:
        yield "logprobs", "logprobs"
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(params, name):
            yield "penalties", name
    if params.logit_bias:
        yield "logit_bias", "logit_bias"
    if params.stop:
        yield "stop", "stop"
    if params.seed is not None:
        yield "seed", "seed"


def check_supported(params: GenerationParams, backend: Any, model_id: str) -> None:
    """400 for the first field the backend cannot honour, and for fields OpenAI does not define
    unless the backend relays them verbatim to an engine that may know them, or names them in
    its ``extra_fields`` (it honours them itself)."""
    name = getattr(backend, "backend_name", type(backend).__name__)
    features = getattr(backend, "features", BASIC)
    for feature, field in requested(params):
        if feature not in features:
            what = FEATURES.get(feature, f"{feature.partition(':')[2]} content parts")
            raise ClientError(f"`{field}`: the {name} backend serving {model_id} does not support {what}")
    unknown = set(params.unknown_fields) - getattr(backend, "extra_fields", frozenset())
    if unknown and not getattr(backend, "forwards_unknown_fields", False):
        listed = ", ".join(f"`{field}`" for field in sorted(unknown))
        raise ClientError(f"unknown fields {listed}: the {name} backend serving {model_id} takes only the fields "
                          f"OpenAI defines (an OpenAI-compatible relay forwards others to its engine)")


def check_consistent(params: GenerationParams) -> None:
    """422 naming the field: tools whose parameters are no JSON schema, a ``tool_choice`` without
    tools or naming none of them, a tool result answering no call, ``top_logprobs`` without
    ``logprobs``."""
    names = set()
    for i, tool in enumerate(params.tools):
        function = tool["function"]
        parameters = function.get("parameters")
        if parameters is not None:
            problem = _known_schema_problem(msgspec.json.encode(parameters, order="sorted"))
            if problem:
                _invalid(["tools", i, "function", "parameters"], f"not a JSON schema: {problem}")
        names.add(function["name"])
    choice = params.tool_choice
    if choice is not None and choice != "none" and not params.tools:
        _invalid(["tool_choice"], "needs `tools` to choose from")
    if isinstance(choice, dict) and choice["function"]["name"] not in names:
        _invalid(["tool_choice", "function", "name"],
                 f"names no tool of this request (tools: {', '.join(sorted(names))})")
    calls: set[str] = set()
    for i, message in enumerate(params.messages):
        for call in message.get("tool_calls") or ():
            calls.add(call["id"])
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if not call_id:
                _invalid(["messages", i, "tool_call_id"], "a tool message needs the id of the call it answers")
            if call_id not in calls:
                _invalid(["messages", i, "tool_call_id"], f"{call_id!r} answers no tool call of an earlier "
                                                          f"assistant message")
    if params.top_logprobs and not params.logprobs:
        _invalid(["top_logprobs"], "needs `logprobs: true`")


@functools.lru_cache(maxsize=1024)
def _known_schema_problem(canonical: bytes) -> str | None:
    """``_schema_problem`` once per distinct schema: checking one against the meta-schema takes
    milliseconds, and an agent sends the same tools with every turn."""
    return _schema_problem(msgspec.json.decode(canonical))


def _schema_problem(schema: Any) -> str | None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


def _invalid(loc: list[str | int], msg: str) -> None:
    raise RequestValidationError.single(["body", *loc], msg)
