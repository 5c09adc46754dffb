"""What an LLM backend is, and the ``register_llm_backends`` extension point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec
import pluggy

from warmgate.core.http.errors import WarmgateError
from warmgate.core.plugins import load_plugins, pm
from warmgate.core.registry import collect_factories

__all__ = [
    "BackendFactory",
    "Completion",
    "Delta",
    "EngineFailed",
    "EngineTimeout",
    "EngineUnavailable",
    "GenerationParams",
    "LLMBackend",
    "Usage",
    "get_backends",
    "hookspec",
    "relays_only",
    "text_messages",
    "TokenLogprob",
    "ToolCallDelta",
    "TopLogprob",
]

hookspec = pluggy.HookspecMarker("warmgate")


class GenerationParams(msgspec.Struct, kw_only=True):
    """One generation, whatever the wire format it came in: the whole OpenAI chat request.

    A backend names itself in ``backend_name``, declares in ``features`` which of ``capabilities.FEATURES`` it honours (default
    ``capabilities.BASIC``) and sets ``forwards_unknown_fields`` when it relays
    ``unknown_fields`` to an engine (or lists in ``extra_fields`` those it honours itself); the
    runner refuses a request that needs more, so a backend never sees a field it did not declare."""

    messages: list[dict[str, Any]]
    """OpenAI messages: ``content`` a string or content parts, assistant ``tool_calls``, ``tool``
    messages with ``tool_call_id``; ``developer`` is already ``system``."""
    max_tokens: int
    prompt: str | None = None
    """A raw text prompt (the legacy completions), generated from without the chat template;
    ``messages`` is then empty. Only backends that declare ``prompt`` receive one."""
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = -1
    """-1: off."""
    seed: int | None = None
    stop: list[str] = []
    n: int = 1
    tools: list[dict[str, Any]] = []
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] = {}
    unknown_fields: dict[str, Any] = {}
    """Fields OpenAI does not define, for ``forwards_unknown_fields`` backends to relay verbatim."""
    images: list[Any] = []
    """The ``image_url`` parts' images decoded (RGB Pillow images, in message order), for
    in-process backends; every part's URL is then a ``data:`` URL (``images.py``)."""


def relays_only(options: Mapping[str, Any]) -> bool:
    """Whether a function with these options holds no model in process: it relays to a running
    engine (Ollama, or vLLM at ``options.url``; without one a vLLM engine is started per process)."""
    backend = options.get("backend")
    return backend == "ollama" or (backend == "vllm" and bool(options.get("url")))


def text_messages(params: GenerationParams) -> list[dict[str, str]]:
    """The messages as role and text, for engines that take nothing else (text parts joined)."""
    messages = []
    for message in params.messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text") or "" for part in content if part.get("type") == "text")
        messages.append({"role": message["role"], "content": content or ""})
    return messages


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    exact: bool = True
    """False: the engine reported no count and no tokenizer was at hand; ``completion_tokens``
    is then the engine's chunk count, shown to the client but not billed (the quote is)."""


class ToolCallDelta(msgspec.Struct, kw_only=True):
    """A piece of a tool call, as OpenAI streams them: the first piece of call ``index`` has its
    ``id`` and ``name``, the following ones fragments of its JSON ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class TopLogprob(msgspec.Struct):
    """A candidate token and its log-probability, as OpenAI's ``top_logprobs`` lists them."""

    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(msgspec.Struct):
    """A generated token's log-probability, in OpenAI's ``logprobs.content`` shape."""

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob] = []


class Delta(msgspec.Struct):
    """A piece of generated text or of tool calls; the last one carries ``finish_reason`` and
    ``usage`` (None: the engine did not say, the runner counts)."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tokens: int = 0
    """Completion tokens this piece holds: what a stream that fails later is billed for."""
    tool_calls: list[ToolCallDelta] | None = None
    logprobs: list[TokenLogprob] | None = None
    """One per token of ``text``, when the request asked for ``logprobs``."""
    stop_sequence: str | None = None
    """On the last piece: the stop sequence that ended the completion, when one did."""


class Completion(msgspec.Struct):
    """A whole answer, from an engine that answers non-streaming requests in one piece."""

    text: str
    finish_reason: str
    usage: Usage | None
    """None: the engine did not say, the runner counts."""
    tool_calls: list[ToolCallDelta] = []
    logprobs: list[TokenLogprob] | None = None
    stop_sequence: str | None = None
    """The stop sequence that ended the completion, when one did and the engine says which."""


class EngineUnavailable(WarmgateError):
    """The engine behind a function cannot be reached (down, restarting): try again shortly."""

    status_code = 503

    def __init__(self, msg: str, retry_after: int = 5) -> None:
        super().__init__(msg, headers={"Retry-After": str(retry_after)})


class EngineTimeout(WarmgateError):
    """The engine accepted the request but did not answer in time."""

    status_code = 504


class EngineFailed(WarmgateError):
    """The engine failed while answering (it answered 5xx, or broke the stream off)."""

    status_code = 502


class LLMBackend(Protocol):
    """A loaded model behind one engine (transformers in-process, vLLM, Ollama, ...)."""

    context_length: int | None
    """Tokens of context, when the engine says; prompt + max_tokens must fit."""

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None | Awaitable[int | None]:
        """Tokens the chat-templated prompt takes (None: unknown, the engine checks); may be async."""
        ...

    def generate(self, params: GenerationParams) -> AsyncIterator[Delta]:
        """Stream the completion; closing the iterator early must stop the generation."""
        ...

    async def close(self) -> None:
        """Release the model (scale to zero)."""
        ...


# A backend may also define ``async complete(params) -> Completion`` for
# non-streaming requests when its engine answers those more cheaply than a stream; the runner
# uses it when present. Stop sequences are then the engine's to honour. And
# ``count_tokens(text) -> int | None`` (may be async): the model's tokenizer, for engines that
# report no usage. ``count_raw_prompt_tokens(prompt) -> int``: a raw prompt's tokens (completions),
# for the context check. ``concurrent_choices = False``: the choices of one request (``n``) run
# one after another instead of at once (``choices.py``).


BackendFactory = Callable[[str, dict[str, Any]], "LLMBackend | Awaitable[LLMBackend]"]
"""``factory(model_id, options)``: sync factories run in a worker thread."""


class LLMBackendSpecs:
    @hookspec
    def register_llm_backends(self, register: Any) -> None:
        """Register LLM backends with ``register(name, factory)``; a function picks one with
        ``options.backend`` (default ``transformers``). Called when an LLM function loads."""


pm.add_hookspecs(LLMBackendSpecs)


def get_backends() -> dict[str, BackendFactory]:
    """Every registered backend by name; a name registered twice is an error naming both."""
    load_plugins()
    return collect_factories(pm.hook.register_llm_backends, "LLM backend")
