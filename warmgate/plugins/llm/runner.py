"""One loaded LLM function: answers ``/llm`` (Livepeer shape) and OpenAI chat from one backend."""

from __future__ import annotations

import collections
import functools
import inspect
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec
import structlog

from warmgate.core.context import current_request
from warmgate.core.functions.spec import Runner
from warmgate.core.http.errors import ContextExceeded, WarmgateError
from warmgate.plugins.llm import openai_wire as oa
from warmgate.plugins.llm.backend import (
    Completion,
    Delta,
    EngineFailed,
    GenerationParams,
    LLMBackend,
    TokenLogprob,
    ToolCallDelta,
    Usage,
    text_messages,
)
from warmgate.plugins.llm.capabilities import check_consistent, check_supported
from warmgate.plugins.llm.choices import choice_params, concurrent, gathered, merged, summed
from warmgate.plugins.llm.images import ImageLimits, resolve_images
from warmgate.plugins.llm.tracing import engine_span, finished, first_chunk
from warmgate.plugins.llm.wire import LLMChoice, LLMMessage, LLMRequest, LLMResponse, LLMTokenUsage

__all__ = ["LLMRunner", "StopScanner"]

_log = structlog.get_logger("warmgate.llm")
_encoder = msgspec.json.Encoder()
_DONE = b"data: [DONE]\n\n"
T = TypeVar("T")


def _sse(payload: Any) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"


class StopScanner:
    """Cuts the text at the first stop sequence, even when one spans several deltas."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False
        self.matched: str | None = None
        """The stop sequence that cut the text."""

    def feed(self, text: str) -> str:
        if self.stopped or not self.stops:
            return "" if self.stopped else text
        buffer = self.pending + text
        cut, stop = min(((i, s) for s, i in ((s, buffer.find(s)) for s in self.stops) if i >= 0),
                        default=(-1, None))
        if cut >= 0:
            self.stopped, self.pending, self.matched = True, "", stop
            return buffer[:cut]
        keep = min(self.hold, len(buffer))
        self.pending = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep]

    def flush(self) -> str:
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text


class LLMRunner(Runner):
    def __init__(self, model_id: str, backend: LLMBackend, image_limits: ImageLimits | None = None) -> None:
        self.model_id = model_id
        self.backend = backend
        self.image_limits = image_limits or ImageLimits()
        self.memory_bytes = getattr(backend, "memory_bytes", None)
        self.function: Any = None
        """The gateway function this runner was loaded for (None off the gateway, as in a ray worker)."""

    async def close(self) -> None:
        await self.backend.close()

    @property
    def _backend_name(self) -> str:
        return getattr(self.backend, "backend_name", type(self.backend).__name__)

    # -- shared ----------------------------------------------------------------------

    async def count_request_tokens(self, params: GenerationParams) -> int | None:
        """The prompt's tokens as generation sees it: with the tools and earlier calls where the
        backend renders them itself (``count_request_tokens``), else the messages' text; None
        when the backend cannot count (its engine does)."""
        count_request = getattr(self.backend, "count_request_tokens", None)
        prompt = count_request(params) if count_request else self.backend.count_prompt_tokens(text_messages(params))
        if inspect.isawaitable(prompt):
            prompt = await prompt
        return prompt

    async def _check_context(self, params: GenerationParams, max_tokens_field: str) -> None:
        limit = self.backend.context_length
        if not limit:
            return
        prompt = await self.count_request_tokens(params) or 0
        if params.max_tokens + prompt > limit:
            raise ContextExceeded.single(
                ["body", max_tokens_field],
                f"max_tokens {params.max_tokens} plus the prompt's {prompt} tokens exceeds the model's "
                f"context of {limit} tokens",
            )

    async def _deltas(self, params: GenerationParams) -> AsyncGenerator[Delta]:
        """The backend's deltas with stop sequences cut out, each carrying the tokens whose text
        it completes; the last one has the usage, counted here when the engine gave none."""
        scanner = StopScanner(params.stop)
        span = engine_span(self.model_id, self._backend_name, params, stream=True)
        generator = self.backend.generate(params)
        # (end offset, tokens, their logprobs) not yet out
        pending: collections.deque[tuple[int, int, list[TokenLogprob]]] = collections.deque()
        fed = sent = chunks = 0
        parts: list[str] = []
        called = False
        try:
            async for delta in generator:
                if span is not None and chunks == 0:
                    first_chunk(span)
                if delta.tool_calls:
                    chunks += 1
                    calls = [c for c in delta.tool_calls if params.parallel_tool_calls is not False or c.index == 0]
                    if calls:
                        called = True
                        yield Delta(tool_calls=calls, tokens=delta.tokens)
                    continue
                if delta.finish_reason is not None:
                    tail = scanner.flush()
                    if tail:
                        parts.append(tail)
                        yield Delta(text=tail, tokens=sum(tokens for _, tokens, _ in pending),
                                    logprobs=_logprobs(params, [e for *_, entries in pending for e in entries]))
                    finish = "tool_calls" if called else "stop" if scanner.stopped else delta.finish_reason
                    usage = await self._usage(delta.usage, "".join(parts), chunks)
                    self._account(params, finish=finish, usage=usage)
                    if span is not None:
                        finished(span, finish, usage)
                    yield Delta(finish_reason=finish, usage=usage,
                                stop_sequence=scanner.matched or delta.stop_sequence)
                    return
                chunks += 1
                fed += len(delta.text)
                pending.append((fed, delta.tokens, delta.logprobs or []))
                text = scanner.feed(delta.text)
                if text:
                    parts.append(text)
                    sent += len(text)
                    tokens, entries = 0, []
                    while pending and pending[0][0] <= sent:
                        _, count, logprobs = pending.popleft()
                        tokens += count
                        entries += logprobs
                    yield Delta(text=text, tokens=tokens, logprobs=_logprobs(params, entries))
        except Exception as exc:
            if span is not None:
                span.fail(_reason(exc))
            raise
        finally:
            await generator.aclose()  # type: ignore[attr-defined]
            if span is not None:
                span.end()
        raise EngineFailed(f"the {self.model_id} engine ended the stream without finishing the completion")

    async def _usage(self, usage: Usage | None, text: str, chunks: int) -> Usage:
        """The engine's usage; when it reported none, the completion counted with the model's
        tokenizer if one is at hand, else its chunk count marked inexact (the quote is billed)."""
        if usage is not None and usage.exact:
            return usage
        prompt = usage.prompt_tokens if usage is not None else 0
        count = getattr(self.backend, "count_tokens", None)
        counted = count(text) if count is not None else None
        if inspect.isawaitable(counted):
            counted = await counted
        if counted is not None:
            return Usage(prompt, counted)
        return Usage(prompt, chunks, exact=False)

    def _account(self, params: GenerationParams, *, finish: str = "error", usage: Usage | None = None,
                 failed: int | None = None, delivered: int = 0) -> None:
        """The one reporter of the request's LLM usage, on its request context: the bill
        (``core/usage.py``) reads it and the access-log line carries it. A completed answer gives
        its usage (completion tokens None when inexact: the quote is billed); a failed stream
        gives the status it failed with and the completion tokens the client had received."""
        context = current_request()
        if context is None:
            return
        quoted = params.max_tokens * params.n  # every choice may use all of max_tokens
        entry: dict[str, Any] = {"model": self.model_id, "quoted_tokens": quoted, "finish_reason": finish}
        if failed is not None:
            context.report_failed_stream(failed, min(delivered, quoted))
            entry.update(failed_status=failed, prompt_tokens=None, completion_tokens=context.usage.completion_tokens)
        elif usage is not None:
            context.report_tokens(usage.prompt_tokens, usage.completion_tokens if usage.exact else None)
            entry.update(prompt_tokens=usage.prompt_tokens, completion_tokens=context.usage.completion_tokens)
        context.log_fields["llm"] = entry

    async def _complete(self, params: GenerationParams) -> Completion:
        complete = getattr(self.backend, "complete", None)
        if complete is not None:  # the engine answers non-streaming requests in one piece
            span = engine_span(self.model_id, self._backend_name, params, stream=False)
            try:
                answer = await complete(params)
            except Exception as exc:
                if span is not None:
                    span.fail(_reason(exc))
                    span.end()
                raise
            usage = await self._usage(answer.usage, answer.text, 0)
            finish = "tool_calls" if answer.tool_calls else answer.finish_reason
            self._account(params, finish=finish, usage=usage)
            if span is not None:
                finished(span, finish, usage)
                span.end()
            calls = [c for c in answer.tool_calls if params.parallel_tool_calls is not False or c.index == 0]
            return Completion(answer.text, finish, usage, calls, _logprobs(params, answer.logprobs or []),
                              answer.stop_sequence)
        parts: list[str] = []
        calls = []
        entries: list[TokenLogprob] = []
        async for delta in self._deltas(params):
            if delta.finish_reason is not None:
                return Completion("".join(parts), delta.finish_reason, delta.usage, calls, _logprobs(params, entries),
                                  delta.stop_sequence)
            parts.append(delta.text)
            calls += delta.tool_calls or ()
            entries += delta.logprobs or ()
        raise EngineFailed(f"the {self.model_id} backend ended without finishing the completion")

    async def _open(self, params: GenerationParams) -> tuple[Delta, AsyncGenerator[Delta]]:
        """The deltas, once the engine gave the first: until then nothing is sent, so an engine
        that is down or fails at once is an HTTP error status, not a 200 and an error event."""
        return await _first(self._deltas(params))

    def _failed(self, params: GenerationParams, exc: Exception, delivered: int) -> int:
        """Log and account a stream that failed after its 200; the status it failed with."""
        _log.exception("llm_stream_failed", model=self.model_id, delivered_tokens=delivered)
        status = exc.status_code if isinstance(exc, WarmgateError) else 500
        self._account(params, failed=status, delivered=delivered)
        return status

    # -- /llm (Livepeer) ---------------------------------------------------------------

    async def __call__(self, request: LLMRequest) -> Any:
        params = GenerationParams(messages=[{"role": m.role, "content": m.content} for m in request.messages],
                                  max_tokens=request.max_tokens, temperature=request.temperature,
                                  top_p=request.top_p, top_k=request.top_k)
        await self._check_context(params, "max_tokens")
        ident, created = f"chatcmpl-{os.urandom(12).hex()}", int(time.time())
        if request.stream:
            first, deltas = await self._open(params)
            return _Stream(self._livepeer_stream(params, first, deltas, ident, created), deltas)
        answer = await self._complete(params)
        return LLMResponse(id=ident, model=self.model_id, created=created, usage=_livepeer_usage(answer.usage),
                           choices=[LLMChoice(index=0, finish_reason=answer.finish_reason,
                                              message=LLMMessage(role="assistant", content=answer.text))])

    async def _livepeer_stream(self, params: GenerationParams, delta: Delta, deltas: AsyncGenerator[Delta],
                               ident: str, created: int) -> AsyncIterator[bytes]:
        completion = delivered = 0
        try:
            while delta.finish_reason is None:
                completion += 1
                delivered += delta.tokens
                yield _sse(LLMResponse(id=ident, model=self.model_id, created=created,
                                       usage=LLMTokenUsage(0, completion, completion),
                                       choices=[LLMChoice(index=0, delta=LLMMessage(role="assistant",
                                                                                    content=delta.text))]))
                delta = await anext(deltas)
            usage = delta.usage or Usage(0, completion)
            yield _sse(LLMResponse(id=ident, model=self.model_id, created=created, usage=_livepeer_usage(usage),
                                   choices=[LLMChoice(index=0, finish_reason=delta.finish_reason,
                                                      delta=LLMMessage(role="assistant", content=""))]))
            yield _DONE
        except Exception as exc:  # headers are sent: end the stream with an error event, never hang
            self._failed(params, exc, delivered)
            yield b"event: error\ndata: " + _encoder.encode({"detail": {"msg": _reason(exc)}}) + b"\n\n"
        finally:
            await deltas.aclose()

    # -- OpenAI chat completions -------------------------------------------------------

    async def chat(self, request: oa.ChatCompletionRequest) -> Any:
        params = _chat_params(request)
        check_consistent(params)
        check_supported(params, self.backend, self.model_id)
        await resolve_images(params, self.image_limits)
        field = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        await self._check_context(params, field)
        ident, created = f"chatcmpl-{os.urandom(12).hex()}", int(time.time())
        if params.n > 1:
            return await self._chat_choices(params, request, ident, created)
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            first, deltas = await self._open(params)
            return _Stream(self._openai_stream(params, first, deltas, ident, created, include_usage), deltas)
        answer = await self._complete(params)
        return oa.ChatCompletion(id=ident, created=created, model=self.model_id, usage=_openai_usage(answer.usage),
                                 choices=[_chat_choice(0, answer)])

    async def _openai_stream(self, params: GenerationParams, delta: Delta, deltas: AsyncGenerator[Delta],
                             ident: str, created: int, include_usage: bool) -> AsyncIterator[bytes]:
        def chunk(choice_delta: oa.ChunkDelta, finish: str | None = None,
                  logprobs: list[TokenLogprob] | None = None) -> bytes:
            return _sse(oa.ChatCompletionChunk(id=ident, created=created, model=self.model_id,
                                               choices=[oa.ChunkChoice(index=0, delta=choice_delta, finish_reason=finish,
                                                                       logprobs=_choice_logprobs(logprobs))]))

        delivered = 0
        try:
            yield chunk(oa.ChunkDelta(role="assistant", content=""))
            while delta.finish_reason is None:
                delivered += delta.tokens
                if delta.tool_calls:
                    yield chunk(oa.ChunkDelta(tool_calls=[_chunk_tool_call(c) for c in delta.tool_calls]))
                else:
                    yield chunk(oa.ChunkDelta(content=delta.text), logprobs=delta.logprobs)
                delta = await anext(deltas)
            yield chunk(oa.ChunkDelta(), delta.finish_reason)
            if include_usage:
                yield _sse(oa.ChatCompletionChunk(id=ident, created=created, model=self.model_id, choices=[],
                                                  usage=_openai_usage(delta.usage or Usage(0, 0))))
            yield _DONE
        except Exception as exc:  # the OpenAI SDK raises APIError on an "error" event
            status = self._failed(params, exc, delivered)
            yield _sse({"error": {"message": _reason(exc), "type": "server_error", "code": status}})
        finally:
            await deltas.aclose()

    # -- several choices (n > 1, completions' prompt lists) --------------------------------

    async def _answers(self, account: GenerationParams, choices: list[GenerationParams],
                       per_prompt: int | None = None) -> tuple[list[Completion], Usage]:
        """One whole answer per choice, each its own generation, and their usage (``summed``),
        which is the request's account (``account.n`` is the number of choices)."""
        answers = await gathered([functools.partial(self._complete, choice) for choice in choices],
                                 concurrent(self.backend))
        usage = summed([answer.usage or Usage(0, 0) for answer in answers], per_prompt)
        self._account(account, finish=answers[0].finish_reason, usage=usage)
        return answers, usage

    async def _open_choices(self, choices: list[GenerationParams]) -> tuple[tuple[int, Delta],
                                                                            AsyncGenerator[tuple[int, Delta]]]:
        """The choices' merged deltas once one came (as ``_open``)."""
        return await _first(merged([self._deltas(choice) for choice in choices], concurrent(self.backend)))

    async def _indexed_stream(self, account: GenerationParams, first: tuple[int, Delta],
                              deltas: AsyncGenerator[tuple[int, Delta]], *, opening: list[bytes],
                              render: Callable[[int, Delta], bytes], closing: Callable[[Usage], list[bytes]],
                              error: Callable[[Exception, int], bytes],
                              per_prompt: int | None = None) -> AsyncIterator[bytes]:
        """The SSE body of several choices: ``opening``, each delta and each choice's finish
        rendered as it comes, then ``closing`` with the summed usage; a failure ends it with
        ``error`` and bills the tokens delivered so far, over all choices."""
        delivered = 0
        usages: dict[int, Usage] = {}
        finish = "stop"
        try:
            for line in opening:
                yield line
            item: tuple[int, Delta] | None = first
            while item is not None:
                index, delta = item
                if delta.finish_reason is not None:
                    usages[index] = delta.usage or Usage(0, 0)
                    finish = delta.finish_reason if index == 0 else finish
                else:
                    delivered += delta.tokens
                yield render(index, delta)
                item = await anext(deltas, None)
            usage = summed([usages[index] for index in sorted(usages)], per_prompt)
            self._account(account, finish=finish, usage=usage)
            for line in closing(usage):
                yield line
            yield _DONE
        except Exception as exc:
            yield error(exc, self._failed(account, exc, delivered))
        finally:
            await deltas.aclose()

    async def _chat_choices(self, params: GenerationParams, request: oa.ChatCompletionRequest, ident: str,
                            created: int) -> Any:
        choices = [choice_params(params, index) for index in range(params.n)]
        if not request.stream:
            answers, usage = await self._answers(params, choices)
            return oa.ChatCompletion(id=ident, created=created, model=self.model_id, usage=_openai_usage(usage),
                                     choices=[_chat_choice(index, answer) for index, answer in enumerate(answers)])

        def chunk(choices: list[oa.ChunkChoice], usage: oa.CompletionUsage | None = None) -> bytes:
            return _sse(oa.ChatCompletionChunk(id=ident, created=created, model=self.model_id, choices=choices,
                                               usage=usage))

        def render(index: int, delta: Delta) -> bytes:
            if delta.finish_reason is not None:
                return chunk([oa.ChunkChoice(index=index, delta=oa.ChunkDelta(), finish_reason=delta.finish_reason)])
            if delta.tool_calls:
                part = oa.ChunkDelta(tool_calls=[_chunk_tool_call(c) for c in delta.tool_calls])
                return chunk([oa.ChunkChoice(index=index, delta=part)])
            return chunk([oa.ChunkChoice(index=index, delta=oa.ChunkDelta(content=delta.text),
                                         logprobs=_choice_logprobs(delta.logprobs))])

        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        first, deltas = await self._open_choices(choices)
        body = self._indexed_stream(
            params, first, deltas, render=render,
            opening=[chunk([oa.ChunkChoice(index=i, delta=oa.ChunkDelta(role="assistant", content=""))])
                     for i in range(params.n)],
            closing=lambda usage: [chunk([], _openai_usage(usage))] if include_usage else [],
            error=_openai_error)
        return _Stream(body, deltas)


    # -- other wire formats (Anthropic, Ollama): the chat path's checks, engine calls and accounting

    async def check(self, params: GenerationParams, max_tokens_field: str) -> None:
        """What ``chat`` checks before the engine runs: consistency, the backend's features, the
        images (decoded into ``params.images``), the context."""
        check_consistent(params)
        check_supported(params, self.backend, self.model_id)
        await resolve_images(params, self.image_limits)
        await self._check_context(params, max_tokens_field)

    async def answer(self, params: GenerationParams) -> Completion:
        """The whole answer, accounted for the bill and the access log."""
        return await self._complete(params)

    async def stream(self, params: GenerationParams,
                     body: Callable[[Delta, AsyncGenerator[Delta]], AsyncGenerator[bytes]]) -> _Stream:
        """The answer as ``body(first, deltas)`` writes it, once the engine gave its first piece."""
        first, deltas = await self._open(params)
        return _Stream(body(first, deltas), deltas)

    def stream_failed(self, params: GenerationParams, exc: Exception, delivered: int) -> tuple[int, str]:
        """Log and account a stream that failed after its 200: the status and reason to tell the client."""
        return self._failed(params, exc, delivered), _reason(exc)


async def _first(deltas: AsyncGenerator[T]) -> tuple[T, AsyncGenerator[T]]:
    """The first item and the rest; the generator is closed if the first fails."""
    try:
        return await anext(deltas), deltas
    except BaseException:
        await deltas.aclose()
        raise


def _chat_choice(index: int, answer: Completion) -> oa.Choice:
    calls = _assembled(answer.tool_calls)
    message = oa.ResponseMessage("assistant", answer.text if answer.text or not calls else None, calls or None)
    return oa.Choice(index=index, message=message, finish_reason=answer.finish_reason,
                     logprobs=_choice_logprobs(answer.logprobs))


def _openai_error(exc: Exception, status: int) -> bytes:
    """The OpenAI SDK raises APIError on an "error" event."""
    return _sse({"error": {"message": _reason(exc), "type": "server_error", "code": status}})


class _Stream:
    """A response stream whose engine already answered: closing it closes the engine's stream
    too, even when the response never started (its client left first)."""

    def __init__(self, body: AsyncGenerator[bytes], deltas: AsyncGenerator[Delta]) -> None:
        self.body = body
        self.deltas = deltas

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.body.__aiter__()

    async def aclose(self) -> None:
        await self.body.aclose()
        await self.deltas.aclose()


def _chat_params(request: oa.ChatCompletionRequest) -> GenerationParams:
    """The whole OpenAI request as the backends' one request model."""
    messages = []
    for message in request.messages:
        entry = msgspec.to_builtins(message)
        if entry["role"] == "developer":
            entry["role"] = "system"
        messages.append(entry)
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    return GenerationParams(
        messages=messages, max_tokens=request.max_completion_tokens or request.max_tokens or 256,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=-1 if request.top_k is None else request.top_k, seed=request.seed, stop=stop, n=request.n,
        tools=msgspec.to_builtins(request.tools or []), tool_choice=msgspec.to_builtins(request.tool_choice),
        parallel_tool_calls=request.parallel_tool_calls, response_format=msgspec.to_builtins(request.response_format),
        logprobs=bool(request.logprobs), top_logprobs=request.top_logprobs,
        presence_penalty=request.presence_penalty or 0.0, frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=request.logit_bias or {}, unknown_fields=getattr(request, "unknown_fields", {}),
    )


def _assembled(pieces: list[ToolCallDelta]) -> list[oa.ToolCall]:
    """Tool-call pieces joined into whole calls, in the order of their index."""
    calls: dict[int, oa.ToolCall] = {}
    for piece in pieces:
        call = calls.get(piece.index)
        if call is None:
            calls[piece.index] = oa.ToolCall(id=piece.id or _call_id(),
                                             function=oa.FunctionCall(name=piece.name or "", arguments=piece.arguments))
        else:
            call.function.arguments += piece.arguments
    return [calls[index] for index in sorted(calls)]


def _chunk_tool_call(piece: ToolCallDelta) -> oa.ChunkToolCall:
    """OpenAI's streamed shape: id, type and name with the first piece, then argument fragments."""
    first = piece.id is not None or piece.name is not None
    return oa.ChunkToolCall(index=piece.index, id=piece.id if first else None, type="function" if first else None,
                            function=oa.ChunkFunction(name=piece.name, arguments=piece.arguments))


def _logprobs(params: GenerationParams, entries: list[TokenLogprob]) -> list[TokenLogprob] | None:
    """The entries when the request asked for logprobs, cut to its ``top_logprobs`` (an engine
    may give more), else None."""
    if not params.logprobs:
        return None
    top = params.top_logprobs or 0
    return [e if len(e.top_logprobs) <= top else TokenLogprob(e.token, e.logprob, e.bytes, e.top_logprobs[:top])
            for e in entries]


def _choice_logprobs(entries: list[TokenLogprob] | None) -> oa.ChoiceLogprobs | None:
    return None if entries is None else oa.ChoiceLogprobs(content=entries)


def _call_id() -> str:
    return f"call_{os.urandom(12).hex()}"


def _reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, WarmgateError) else f"generation failed: {type(exc).__name__}: {exc}"


def _livepeer_usage(usage: Usage) -> LLMTokenUsage:
    return LLMTokenUsage(usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens + usage.completion_tokens)


def _openai_usage(usage: Usage) -> oa.CompletionUsage:
    return oa.CompletionUsage(usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens + usage.completion_tokens)
