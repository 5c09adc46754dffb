"""One loaded LLM function: answers ``/llm`` (Livepeer shape) and OpenAI chat from one backend."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import structlog

from warmgate.core.errors import RequestValidationError, WarmgateError
from warmgate.core.logs import access_fields
from warmgate.core.spec import Runner
from warmgate.plugins.llm import openai_wire as oa
from warmgate.plugins.llm.backend import Delta, GenerationParams, LLMBackend, Usage
from warmgate.plugins.llm.wire import LLMChoice, LLMMessage, LLMRequest, LLMResponse, LLMTokenUsage

__all__ = ["LLMRunner", "StopScanner"]

_log = structlog.get_logger("warmgate.llm")
_encoder = msgspec.json.Encoder()
_DONE = b"data: [DONE]\n\n"


def _sse(payload: Any) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"


class StopScanner:
    """Cuts the text at the first stop sequence, even when one spans several deltas."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped or not self.stops:
            return "" if self.stopped else text
        buffer = self.pending + text
        cut = min((i for i in (buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self.pending = True, ""
            return buffer[:cut]
        keep = min(self.hold, len(buffer))
        self.pending = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep]

    def flush(self) -> str:
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text


class LLMRunner(Runner):
    def __init__(self, model_id: str, backend: LLMBackend) -> None:
        self.model_id = model_id
        self.backend = backend
        self.memory_bytes = getattr(backend, "memory_bytes", None)

    async def close(self) -> None:
        await self.backend.close()

    # -- shared ----------------------------------------------------------------------

    async def _check_context(self, params: GenerationParams, max_tokens_field: str) -> None:
        limit = self.backend.context_length
        if not limit:
            return
        prompt = self.backend.count_prompt_tokens(params.messages)
        if inspect.isawaitable(prompt):
            prompt = await prompt
        prompt = prompt or 0
        if params.max_tokens + prompt > limit:
            raise RequestValidationError.single(
                ["body", max_tokens_field],
                f"max_tokens {params.max_tokens} plus the prompt's {prompt} tokens exceeds the model's "
                f"context of {limit} tokens",
            )

    async def _deltas(self, params: GenerationParams) -> AsyncIterator[Delta]:
        """The backend's deltas with stop sequences cut out; the last delta has usage."""
        scanner = StopScanner(params.stop)
        generator = self.backend.generate(params)
        try:
            async for delta in generator:
                if delta.finish_reason is not None:
                    tail = scanner.flush()
                    if tail:
                        yield Delta(text=tail)
                    finish = "stop" if scanner.stopped else delta.finish_reason
                    self._record_usage(params, delta.usage, finish)
                    yield Delta(finish_reason=finish, usage=delta.usage)
                    return
                text = scanner.feed(delta.text)
                if text:
                    yield Delta(text=text)
        finally:
            await generator.aclose()  # type: ignore[attr-defined]

    def _record_usage(self, params: GenerationParams, usage: Usage | None, finish: str) -> None:
        """The actual tokens, beside the max_tokens the request was quoted for, on the request's
        access-log line (one line per request, with its request id)."""
        fields = access_fields.get()
        if fields is not None:
            fields["llm"] = {"model": self.model_id, "quoted_tokens": params.max_tokens, "finish_reason": finish,
                             "prompt_tokens": usage.prompt_tokens if usage else None,
                             "completion_tokens": usage.completion_tokens if usage else None}

    async def _complete(self, params: GenerationParams) -> tuple[str, str, Usage]:
        complete = getattr(self.backend, "complete", None)
        if complete is not None:  # the engine answers non-streaming requests in one piece
            text, finish, usage = await complete(params)
            self._record_usage(params, usage, finish)
            return text, finish, usage
        parts: list[str] = []
        async for delta in self._deltas(params):
            if delta.finish_reason is not None:
                return "".join(parts), delta.finish_reason, delta.usage or Usage(0, 0)
            parts.append(delta.text)
        raise WarmgateError(f"the {self.model_id} backend ended without finishing the completion")

    # -- /llm (Livepeer) ---------------------------------------------------------------

    async def __call__(self, request: LLMRequest) -> Any:
        params = GenerationParams(messages=[{"role": m.role, "content": m.content} for m in request.messages],
                                  max_tokens=request.max_tokens, temperature=request.temperature,
                                  top_p=request.top_p, top_k=request.top_k)
        await self._check_context(params, "max_tokens")
        ident, created = f"chatcmpl-{os.urandom(12).hex()}", int(time.time())
        if request.stream:
            return self._livepeer_stream(params, ident, created)
        text, finish, usage = await self._complete(params)
        return LLMResponse(id=ident, model=self.model_id, created=created, usage=_livepeer_usage(usage),
                           choices=[LLMChoice(index=0, finish_reason=finish,
                                              message=LLMMessage(role="assistant", content=text))])

    async def _livepeer_stream(self, params: GenerationParams, ident: str, created: int) -> AsyncIterator[bytes]:
        completion = 0
        try:
            async for delta in self._deltas(params):
                if delta.finish_reason is not None:
                    usage = delta.usage or Usage(0, completion)
                    yield _sse(LLMResponse(id=ident, model=self.model_id, created=created,
                                           usage=_livepeer_usage(usage),
                                           choices=[LLMChoice(index=0, finish_reason=delta.finish_reason,
                                                              delta=LLMMessage(role="assistant", content=""))]))
                    yield _DONE
                    return
                completion += 1
                yield _sse(LLMResponse(id=ident, model=self.model_id, created=created,
                                       usage=LLMTokenUsage(0, completion, completion),
                                       choices=[LLMChoice(index=0, delta=LLMMessage(role="assistant",
                                                                                    content=delta.text))]))
        except Exception as exc:  # headers are sent: end the stream with an error event, never hang
            _log.exception("llm_stream_failed", model=self.model_id)
            yield b"event: error\ndata: " + _encoder.encode({"detail": {"msg": _reason(exc)}}) + b"\n\n"

    # -- OpenAI chat completions -------------------------------------------------------

    async def chat(self, request: oa.ChatCompletionRequest) -> Any:
        if request.n != 1:
            raise RequestValidationError.single(["body", "n"], "only n=1 is supported by this backend")
        messages = []
        for i, message in enumerate(request.messages):
            if isinstance(message.content, list) and any(p.type != "text" for p in message.content):
                raise RequestValidationError.single(["body", "messages", i, "content"],
                                                    "only text content parts are supported by this model")
            role = "system" if message.role == "developer" else message.role
            messages.append({"role": role, "content": oa.message_text(message)})
        field = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        params = GenerationParams(
            messages=messages, max_tokens=request.max_completion_tokens or request.max_tokens or 256,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=-1 if request.top_k is None else request.top_k, seed=request.seed, stop=stop,
        )
        await self._check_context(params, field)
        ident, created = f"chatcmpl-{os.urandom(12).hex()}", int(time.time())
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return self._openai_stream(params, ident, created, include_usage)
        text, finish, usage = await self._complete(params)
        return oa.ChatCompletion(id=ident, created=created, model=self.model_id, usage=_openai_usage(usage),
                                 choices=[oa.Choice(index=0, message=oa.ResponseMessage("assistant", text),
                                                    finish_reason=finish)])

    async def _openai_stream(self, params: GenerationParams, ident: str, created: int,
                             include_usage: bool) -> AsyncIterator[bytes]:
        def chunk(delta: oa.ChunkDelta, finish: str | None = None) -> bytes:
            return _sse(oa.ChatCompletionChunk(id=ident, created=created, model=self.model_id,
                                               choices=[oa.ChunkChoice(index=0, delta=delta, finish_reason=finish)]))

        try:
            yield chunk(oa.ChunkDelta(role="assistant", content=""))
            async for delta in self._deltas(params):
                if delta.finish_reason is not None:
                    yield chunk(oa.ChunkDelta(), delta.finish_reason)
                    if include_usage:
                        yield _sse(oa.ChatCompletionChunk(id=ident, created=created, model=self.model_id, choices=[],
                                                          usage=_openai_usage(delta.usage or Usage(0, 0))))
                    yield _DONE
                    return
                yield chunk(oa.ChunkDelta(content=delta.text))
        except Exception as exc:  # the OpenAI SDK raises APIError on an "error" event
            _log.exception("llm_stream_failed", model=self.model_id)
            yield _sse({"error": {"message": _reason(exc), "type": "server_error", "code": 500}})


def _reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, WarmgateError) else f"generation failed: {type(exc).__name__}: {exc}"


def _livepeer_usage(usage: Usage) -> LLMTokenUsage:
    return LLMTokenUsage(usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens + usage.completion_tokens)


def _openai_usage(usage: Usage) -> oa.CompletionUsage:
    return oa.CompletionUsage(usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens + usage.completion_tokens)
