"""The Ollama API on the LLM and embeddings functions: ``/api/chat`` and ``/api/generate``
(NDJSON streaming on by default), ``/api/embed`` and ``/api/embeddings``, translated to and from
the runners' request models, so keys, quotes, usage, metrics and the access log are those of
every other route. ``keep_alive`` sets how long the function stays loaded once idle."""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import msgspec

from warmgate.core.functions.spec import PipelineSpec, PriceUnit
from warmgate.core.http.decode import json_body
from warmgate.core.http.errors import ClientError
from warmgate.plugins.llm import ollama_wire as ow
from warmgate.plugins.llm.backend import Delta, GenerationParams, Usage, text_messages
from warmgate.plugins.llm.embeddings.inputs import prepare_embeddings, prompt_tokens
from warmgate.plugins.llm.embeddings.wire import EmbeddingJob, EmbeddingRequest
from warmgate.plugins.llm.ollama_models import ollama_routes, render_error, route_names
from warmgate.plugins.llm.ollama_names import ollama_name
from warmgate.plugins.llm.runner import LLMRunner
from warmgate.plugins.llm.wire_errors import error_handlers

__all__ = ["DEFAULT_NUM_PREDICT", "keep_alive_seconds", "ollama_routes", "ollama_specs", "render_error"]

DEFAULT_NUM_PREDICT = 1024
"""Tokens generated when ``num_predict`` is unset or -1/-2 (Ollama: until the context is full),
cut to what the context leaves; the request is quoted at this many."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


# -- keep_alive ----------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: float | str | None) -> float | None:
    """Seconds from a number or a Go duration (``"5m"``, ``"1h30m"``); negative: forever."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if not body or _DURATION.sub("", body):
        raise ClientError(f"keep_alive: {value!r} is neither seconds nor a duration like '5m' or '1h30m'")
    return sign * sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(body))


def _keep_alive(runner: Any, seconds: float | None) -> None:
    """Apply the request's ``keep_alive`` to the runner's function (from its release on)."""
    function = getattr(runner, "function", None)
    if seconds is not None and function is not None:
        function.keep_alive = seconds


# -- requests -> GenerationParams ------------------------------------------------------------

_IMAGE_MAGIC = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _image_part(data: str) -> dict[str, Any]:
    media = next((kind for prefix, kind in _IMAGE_MAGIC if data.startswith(prefix)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}


def _content(text: str, images: list[str] | None) -> str | list[dict[str, Any]]:
    if not images:
        return text
    return [{"type": "text", "text": text}, *(_image_part(image) for image in images)]


def _chat_messages(messages: list[ow.OllamaMessage]) -> list[dict[str, Any]]:
    """Ollama messages as OpenAI ones: Ollama's tool calls carry no ids, so each gets one, and a
    ``tool`` message answers the earliest open call of its ``tool_name`` (else the earliest)."""
    out: list[dict[str, Any]] = []
    open_calls: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        entry: dict[str, Any] = {"role": message.role, "content": _content(message.content or "", message.images)}
        if message.tool_calls:
            entry["tool_calls"] = []
            for j, call in enumerate(message.tool_calls):
                ident = f"call_{i}_{j}"
                open_calls.append((ident, call.function.name))
                entry["tool_calls"].append({"id": ident, "type": "function", "function": {
                    "name": call.function.name, "arguments": _encoder.encode(call.function.arguments).decode()}})
        if message.role == "tool":
            if not open_calls:
                raise ClientError(f"messages[{i}]: a tool message answers no earlier assistant tool call")
            match = next((c for c in open_calls if c[1] == message.tool_name), open_calls[0])
            open_calls.remove(match)
            entry["tool_call_id"] = match[0]
        out.append(entry)
    return out


def _response_format(fmt: ow.OllamaFormat | None) -> dict[str, Any] | None:
    if not fmt:
        return None
    if fmt == "json":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}


def _refuse_unsupported(request: ow.OllamaChatRequest | ow.OllamaGenerateRequest) -> None:
    if request.template:
        raise ClientError("template: warmgate applies each model's own chat template; a template cannot be given")
    if request.think:
        raise ClientError(f'"{request.model}" does not support thinking')
    if isinstance(request, ow.OllamaGenerateRequest):
        if request.raw and request.images:
            raise ClientError("images: a raw prompt is text only; send the images without raw")
        if request.suffix:
            raise ClientError("suffix: fill-in-the-middle is not supported")
        if request.context:
            raise ClientError("context: continue a conversation with /api/chat and its messages instead")


def _num_predict(options: ow.OllamaOptions | None) -> int | None:
    """The requested tokens; None: as many as the context allows."""
    value = options.num_predict if options is not None else None
    if value is None or value in (-1, -2):
        return None
    if value <= 0:
        raise ClientError(f"options.num_predict: {value} generates nothing; give a positive number of tokens, "
                          "or -1 for as many as the context allows")
    return value


def ollama_params(request: ow.OllamaChatRequest | ow.OllamaGenerateRequest) -> GenerationParams:
    """The request as the backends' one request model (``max_tokens``: the quote, see ``_fit``)."""
    _refuse_unsupported(request)
    if isinstance(request, ow.OllamaChatRequest):
        messages = _chat_messages(request.messages)
        tools = msgspec.to_builtins(request.tools or [])
    elif request.raw:  # the prompt as it is, no chat template (and so no system message), as Ollama does
        messages, tools = [], []
    else:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": _content(request.prompt, request.images)})
        tools = []
    options = request.options or ow.OllamaOptions()
    raw = isinstance(request, ow.OllamaGenerateRequest) and request.raw
    return GenerationParams(
        messages=messages, prompt=request.prompt if raw else None,
        max_tokens=_num_predict(options) or DEFAULT_NUM_PREDICT,
        temperature=0.8 if options.temperature is None else options.temperature,  # Ollama's defaults
        top_p=0.9 if options.top_p is None else options.top_p,
        top_k=-1 if not options.top_k else options.top_k, seed=options.seed, stop=list(options.stop or ()),
        tools=tools, response_format=_response_format(request.format),
        presence_penalty=options.presence_penalty or 0.0, frequency_penalty=options.frequency_penalty or 0.0)


async def _fit(runner: LLMRunner, params: GenerationParams, request: ow.OllamaChatRequest | ow.OllamaGenerateRequest) -> None:
    """Without ``num_predict``, generate what the context leaves (``num_ctx`` if smaller)."""
    options = request.options or ow.OllamaOptions()
    context = min(c for c in (runner.backend.context_length, options.num_ctx, 1 << 62) if c)
    if context >= 1 << 62:
        return
    count_raw = getattr(runner.backend, "count_raw_prompt_tokens", None)
    if params.prompt is not None:
        prompt = count_raw(params.prompt) if count_raw is not None else None
    else:
        prompt = runner.backend.count_prompt_tokens(text_messages(params))
    if not isinstance(prompt, int) and prompt is not None:
        prompt = await prompt
    if prompt is None:
        return
    if _num_predict(options) is None:
        params.max_tokens = max(1, min(params.max_tokens, context - prompt))
    elif prompt + params.max_tokens > context:
        raise ClientError(f"options.num_predict {params.max_tokens} plus the prompt's {prompt} tokens exceeds "
                          f"the context of {context} tokens")


def _stamp(body: bytes, type_: type) -> Any:
    request = json_body(body, type_)
    request.received = time.perf_counter_ns()
    return request


def decode_chat(body: bytes) -> ow.OllamaChatRequest:
    return _stamp(body, ow.OllamaChatRequest)


def decode_generate(body: bytes) -> ow.OllamaGenerateRequest:
    return _stamp(body, ow.OllamaGenerateRequest)


# -- answers -------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class _Clock:
    """Ollama's durations (ns): waiting and loading, the prompt (to the first piece), the answer."""

    def __init__(self, received: int) -> None:
        self.received = received
        self.started = self.first = time.perf_counter_ns()

    def first_piece(self) -> None:
        self.first = time.perf_counter_ns()

    def fields(self, usage: Usage) -> dict[str, int]:
        end = time.perf_counter_ns()
        return {"total_duration": end - self.received, "load_duration": self.started - self.received,
                "prompt_eval_count": usage.prompt_tokens, "prompt_eval_duration": self.first - self.started,
                "eval_count": usage.completion_tokens, "eval_duration": end - self.first}


def _done_reason(finish: str | None) -> str:
    return "length" if finish == "length" else "stop"


def _tool_calls(pieces: list[Any]) -> list[ow.OllamaToolCall]:
    """Pieces joined into whole calls with their arguments as objects, as Ollama sends them."""
    calls: dict[int, list[str]] = {}
    for piece in pieces:
        call = calls.setdefault(piece.index, [piece.name or "", ""])
        call[1] += piece.arguments
    out = []
    for index in sorted(calls):
        name, arguments = calls[index]
        try:
            value = _decoder.decode(arguments or "{}")
        except msgspec.DecodeError:
            raise ClientError(f"the model called {name!r} with arguments that are not JSON: {arguments!r}") from None
        out.append(ow.OllamaToolCall(function=ow.OllamaFunctionCall(name=name, arguments=value, index=index)))
    return out


def _chunk(request: Any, created: str, text: str, calls: list[ow.OllamaToolCall] | None = None, **final: Any) -> Any:
    if isinstance(request, ow.OllamaChatRequest):
        message = ow.OllamaMessage(role="assistant", content=text, tool_calls=calls or None)
        return ow.OllamaChatResponse(model=request.model, created_at=created, message=message, **final)
    return ow.OllamaGenerateResponse(model=request.model, created_at=created, response=text, **final)


async def respond(runner: LLMRunner, request: ow.OllamaChatRequest | ow.OllamaGenerateRequest) -> Any:
    """``/api/chat`` and ``/api/generate``: one JSON answer, or NDJSON lines ending in ``done``."""
    clock = _Clock(getattr(request, "received", time.perf_counter_ns()))
    params = ollama_params(request)
    seconds = keep_alive_seconds(request.keep_alive)
    if not (request.messages if isinstance(request, ow.OllamaChatRequest) else request.prompt):
        _keep_alive(runner, seconds)
        reason = "unload" if seconds == 0 else "load"  # Ollama's way to load (or unload) a model
        return _chunk(request, _now(), "", done=True, done_reason=reason)
    await _fit(runner, params, request)
    await runner.check(params, "options.num_predict")
    _keep_alive(runner, seconds)  # a valid request only
    if request.stream:
        return await runner.stream(params, lambda first, deltas: _lines(runner, params, request, clock, first, deltas))
    answer = await runner.answer(params)  # one piece: its whole time is eval_duration
    return _chunk(request, _now(), answer.text, _tool_calls(answer.tool_calls), done=True,
                  done_reason=_done_reason(answer.finish_reason), **clock.fields(answer.usage or Usage(0, 0)))


async def _lines(runner: LLMRunner, params: GenerationParams, request: Any, clock: _Clock, delta: Delta,
                 deltas: AsyncGenerator[Delta]) -> AsyncGenerator[bytes]:
    """A line per piece of text; tool calls, whole, in one line before the last (as Ollama)."""
    created = _now()
    clock.first_piece()
    delivered = 0
    pieces: list[Any] = []
    try:
        while delta.finish_reason is None:
            delivered += delta.tokens
            if delta.tool_calls:
                pieces += delta.tool_calls
            elif delta.text:
                yield _encoder.encode(_chunk(request, created, delta.text, done=False)) + b"\n"
            delta = await anext(deltas)
        if pieces:
            yield _encoder.encode(_chunk(request, created, "", _tool_calls(pieces), done=False)) + b"\n"
        final = _chunk(request, _now(), "", done=True, done_reason=_done_reason(delta.finish_reason),
                       **clock.fields(delta.usage or Usage(0, 0)))
        yield _encoder.encode(final) + b"\n"
    except Exception as exc:  # headers are sent: Ollama ends a failed stream with an error line
        _, reason = runner.stream_failed(params, exc, delivered)
        yield _encoder.encode({"error": reason}) + b"\n"


# -- embeddings ----------------------------------------------------------------------------


class _EmbedJob(msgspec.Struct):
    request: ow.OllamaEmbedRequest | ow.OllamaEmbeddingsRequest
    job: EmbeddingJob


def _prepare_embed(request: ow.OllamaEmbedRequest | ow.OllamaEmbeddingsRequest, options: dict[str, Any]) -> _EmbedJob:
    if isinstance(request, ow.OllamaEmbedRequest):
        inputs = EmbeddingRequest(input=request.input, model=request.model, dimensions=request.dimensions)
    else:
        inputs = EmbeddingRequest(input=request.prompt, model=request.model)
    return _EmbedJob(request, prepare_embeddings(inputs, options))


def _embed_units(prepared: _EmbedJob) -> int:
    return prompt_tokens(prepared.job)


async def embed(runner: Any, prepared: _EmbedJob) -> Any:
    request = prepared.request
    clock = _Clock(getattr(request, "received", time.perf_counter_ns()))
    seconds = keep_alive_seconds(request.keep_alive)
    answer = await runner(prepared.job)
    _keep_alive(runner, seconds)
    vectors = [item.embedding for item in answer.data]
    if isinstance(request, ow.OllamaEmbeddingsRequest):
        return ow.OllamaEmbeddingsResponse(embedding=vectors[0])
    timing = clock.fields(Usage(answer.usage.prompt_tokens, 0))
    return ow.OllamaEmbedResponse(model=request.model, embeddings=vectors, total_duration=timing["total_duration"],
                            load_duration=timing["load_duration"], prompt_eval_count=answer.usage.prompt_tokens)


def decode_embed(body: bytes) -> ow.OllamaEmbedRequest:
    return _stamp(body, ow.OllamaEmbedRequest)


def decode_embeddings(body: bytes) -> ow.OllamaEmbeddingsRequest:
    return _stamp(body, ow.OllamaEmbeddingsRequest)


# -- specs ---------------------------------------------------------------------------------


def _chat_units(request: ow.OllamaChatRequest | ow.OllamaGenerateRequest) -> int:
    return _num_predict(request.options) or DEFAULT_NUM_PREDICT


def model_names(config: Any) -> Iterator[str]:
    """The names a function answers to on the Ollama routes: its Ollama name (the table in
    ``ollama_names``, in reverse) and ``:latest`` spellings."""
    yield from route_names(config)
    try:
        yield ollama_name(config.model_id, config.options.get("names"))
    except ValueError:
        pass


def ollama_specs(llm: str, embeddings: str) -> list[PipelineSpec]:
    handlers = error_handlers(render_error)
    common: dict[str, Any] = {"model_field": "model", "price_unit": PriceUnit.TOKEN, "tags": ("ollama",),
                              "wire": "ollama", "exception_handlers": handlers, "model_names": model_names}
    return [
        PipelineSpec(name="ollama-chat", request=ow.OllamaChatRequest, response=ow.OllamaChatResponse, decode=decode_chat,
                     serves=llm, invoke=respond, units=_chat_units, paths=("/api/chat",), summary="Ollama chat",
                     operation_id="ollamaChat", stream_media_type="application/x-ndjson",
                     description="Ollama's chat on the LLM functions; NDJSON lines unless `stream: false`.",
                     **common),
        PipelineSpec(name="ollama-generate", request=ow.OllamaGenerateRequest, response=ow.OllamaGenerateResponse,
                     decode=decode_generate, serves=llm, invoke=respond, units=_chat_units, paths=("/api/generate",),
                     summary="Ollama generate", operation_id="ollamaGenerate", stream_media_type="application/x-ndjson",
                     description="Ollama's prompt completion on the LLM functions (the model's chat template applies).",
                     **common),
        PipelineSpec(name="ollama-embed", request=ow.OllamaEmbedRequest, response=ow.OllamaEmbedResponse, decode=decode_embed,
                     serves=embeddings, invoke=embed, prepare=_prepare_embed, units=_embed_units,
                     paths=("/api/embed",), summary="Ollama embed", operation_id="ollamaEmbed",
                     description="Ollama's embeddings on the embeddings functions.", **common),
        PipelineSpec(name="ollama-embeddings", request=ow.OllamaEmbeddingsRequest, response=ow.OllamaEmbeddingsResponse,
                     decode=decode_embeddings, serves=embeddings, invoke=embed, prepare=_prepare_embed,
                     units=_embed_units, paths=("/api/embeddings",), summary="Ollama embeddings (older)",
                     operation_id="ollamaEmbeddings", description="Ollama's older one-prompt embeddings.", **common),
    ]

