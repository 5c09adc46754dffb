"""An LLM request's engine call as a span with OpenTelemetry's GenAI attributes (``chat <model>``:
the model, the sampling asked for, the tokens used, the finish reason and, streamed, the time to
the first chunk). None, at the cost of a context-variable read, when the request is not traced."""

from __future__ import annotations

import time

from warmgate.core.tracing import CLIENT, Span, start_span
from warmgate.plugins.llm.backend import GenerationParams, Usage

__all__ = ["engine_span", "first_chunk", "finished"]


def engine_span(model: str, backend: str, params: GenerationParams, *, stream: bool) -> Span | None:
    """Started now, under the request's executor span; an engine reached over HTTP (vLLM) gets
    its ``traceparent`` (``warmgate.core.tracing.outgoing_headers``)."""
    operation = "chat" if params.prompt is None else "text_completion"
    return start_span(f"{operation} {model}", CLIENT, {
        "gen_ai.operation.name": operation, "gen_ai.request.model": model, "gen_ai.request.max_tokens": params.max_tokens,
        "gen_ai.request.temperature": params.temperature, "gen_ai.request.top_p": params.top_p,
        "gen_ai.request.stream": stream, "warmgate.llm.backend": backend})


def first_chunk(span: Span) -> None:
    span.set("gen_ai.response.time_to_first_chunk", (time.time_ns() - span.start_ns) / 1e9)


def finished(span: Span, finish: str, usage: Usage | None) -> None:
    span.set("gen_ai.response.finish_reasons", [finish])
    if usage is not None:
        span.set("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set("gen_ai.usage.output_tokens", usage.completion_tokens)
