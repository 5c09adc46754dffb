"""Ollama API wire types (``/api/chat``, ``/api/generate``, ``/api/embed``...): what the ``ollama``
client sends and parses. Requests keep the time they arrived (``received``), for the durations
Ollama reports."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from warmgate.plugins.llm import openai_wire as oa

__all__ = [
    "OllamaChatRequest",
    "OllamaChatResponse",
    "OllamaEmbedRequest",
    "OllamaEmbedResponse",
    "OllamaEmbeddingsRequest",
    "OllamaEmbeddingsResponse",
    "OllamaFunctionCall",
    "OllamaGenerateRequest",
    "OllamaGenerateResponse",
    "OllamaMessage",
    "OllamaModel",
    "OllamaModelDetails",
    "OllamaModels",
    "OllamaOptions",
    "OllamaProgress",
    "OllamaPullRequest",
    "OllamaRunningModel",
    "OllamaRunningModels",
    "OllamaShowRequest",
    "OllamaShowResponse",
    "OllamaToolCall",
    "OllamaVersion",
]

OllamaKeepAlive = float | str
"""Seconds, or a Go duration (``"5m"``, ``"1h30m"``, ``"-1"``); 0 unloads once the request ends."""


class OllamaFunctionCall(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    arguments: dict[str, Any] = {}
    index: int | None = None


class OllamaToolCall(msgspec.Struct, kw_only=True):
    function: OllamaFunctionCall


class OllamaMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None
    """Base64-encoded images."""
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    """On a ``tool`` message: the tool whose result it is."""
    thinking: str | None = None


class OllamaOptions(msgspec.Struct, kw_only=True):
    """The sampling options warmgate honours; Ollama's others (``mirostat``, ``num_gpu``...) are
    engine settings and ignored, as Ollama ignores options a model does not use."""

    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    num_predict: int | None = None
    """Tokens to generate; -1 or -2: as many as the context allows (at most ``DEFAULT_NUM_PREDICT``)."""
    stop: Annotated[list[str], msgspec.Meta(max_length=16)] | None = None
    seed: int | None = None
    num_ctx: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """A context smaller than the function's: prompt and answer must fit it."""
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None


OllamaFormat = Literal["", "json"] | dict[str, Any]
"""``json``, or a JSON schema the answer must fit."""


class OllamaChatRequest(msgspec.Struct, kw_only=True, dict=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: list[OllamaMessage] = []
    """Empty: load the model and answer ``done_reason: load`` (``unload`` with ``keep_alive: 0``)."""
    tools: list[oa.Tool] | None = None
    format: OllamaFormat | None = None
    options: OllamaOptions | None = None
    stream: bool = True
    keep_alive: OllamaKeepAlive | None = None
    think: bool | str | None = None
    template: str | None = None


class OllamaGenerateRequest(msgspec.Struct, kw_only=True, dict=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    prompt: str = ""
    """Empty: load the model (``done_reason: load``; ``unload`` with ``keep_alive: 0``)."""
    system: str | None = None
    images: list[str] | None = None
    format: OllamaFormat | None = None
    options: OllamaOptions | None = None
    stream: bool = True
    keep_alive: OllamaKeepAlive | None = None
    raw: bool = False
    template: str | None = None
    suffix: str | None = None
    context: list[int] | None = None
    think: bool | str | None = None


class _Answer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What every chat and generate line has; the last (``done``) adds the reason, counts and
    durations (nanoseconds)."""

    model: str
    created_at: str
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class OllamaChatResponse(_Answer, kw_only=True, omit_defaults=True):
    message: OllamaMessage


class OllamaGenerateResponse(_Answer, kw_only=True, omit_defaults=True):
    response: str


class OllamaEmbedRequest(msgspec.Struct, kw_only=True, dict=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | list[str]
    truncate: bool = True
    """Accepted; an input longer than the model's context is a 4xx either way."""
    options: dict[str, Any] | None = None
    keep_alive: OllamaKeepAlive | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None


class OllamaEmbedResponse(msgspec.Struct, kw_only=True):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class OllamaEmbeddingsRequest(msgspec.Struct, kw_only=True, dict=True):
    """The older ``/api/embeddings``: one prompt, one vector."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: OllamaKeepAlive | None = None


class OllamaEmbeddingsResponse(msgspec.Struct):
    embedding: list[float]


class OllamaModelDetails(msgspec.Struct, kw_only=True):
    format: str
    family: str
    parent_model: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class OllamaModel(msgspec.Struct, kw_only=True):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: OllamaModelDetails


class OllamaModels(msgspec.Struct):
    models: list[OllamaModel]


class OllamaRunningModel(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    model: str
    size: int
    digest: str
    details: OllamaModelDetails
    expires_at: str
    size_vram: int = 0
    context_length: int | None = None


class OllamaRunningModels(msgspec.Struct):
    models: list[OllamaRunningModel]


class OllamaShowRequest(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""
    """The older spelling of ``model``."""
    verbose: bool = False


class OllamaShowResponse(msgspec.Struct, kw_only=True):
    details: OllamaModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
    parameters: str = ""
    template: str = ""
    modelfile: str = ""
    license: str = ""


class OllamaPullRequest(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""
    """The older spelling of ``model``."""
    insecure: bool = False
    stream: bool = True


class OllamaProgress(msgspec.Struct, omit_defaults=True):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class OllamaVersion(msgspec.Struct):
    version: str
