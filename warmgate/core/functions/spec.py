"""What a plugin declares about a pipeline; the core builds routes, docs and functions from it."""

from __future__ import annotations

import enum
import importlib
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

import msgspec

from warmgate.core.settings import Price

__all__ = ["DemoModel", "File", "Loader", "PipelineSpec", "PriceUnit", "Runner", "SpecBase", "deferred", "module_bytes"]


class File(msgspec.Struct, frozen=True):
    """An uploaded file of a multipart request, read into memory (bodies are size-capped)."""

    filename: str
    content_type: str
    data: bytes


class PriceUnit(str, enum.Enum):
    """What one billed unit of a pipeline is, as Livepeer prices it."""

    PIXEL = "pixel"
    """Width x height (x images or frames)."""
    MILLISECOND = "ms"
    """Milliseconds of input audio."""
    CHARACTER = "character"
    """Characters of input text."""
    TOKEN = "token"
    """LLM max_tokens."""
    REQUEST = "request"
    """One request."""


class Runner:
    """A loaded model. Subclassing is optional: any callable ``runner(request)`` works.

    ``__call__`` receives the validated request struct and returns a response struct (or dict),
    a ``litestar.Response``, or an async iterator of ``bytes``/``str`` chunks that is streamed.
    A plain ``def`` runs in a worker thread; an ``async def`` is awaited on the event loop.
    """

    memory_bytes: int | None = None
    """Bytes the loaded model holds, if the runner knows; used by the memory budget."""

    def __call__(self, request: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    def close(self) -> None:
        """Release the model. Called when the function scales to zero."""


def module_bytes(*modules: Any) -> int:
    """Bytes the parameters and buffers of torch modules hold: a runner's ``memory_bytes``.
    Takes the modules, so torch itself is never imported here."""
    return sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))


Loader = Callable[[str, dict[str, Any]], "Runner | Callable[[Any], Any] | Awaitable[Any]"]
"""``load(model_id, options)``: builds the runner; sync loaders run in a worker thread."""


def deferred(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` as a callable that imports its module on the first call, so
    a plugin can name its loaders and model builders without importing torch and friends when
    the gateway starts."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise ValueError(f"expected 'package.module:function', got {target!r}")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{target}, imported on first use."
    call.target = target  # type: ignore[attr-defined]  # where a standby worker finds the module
    return call


@dataclass(frozen=True, kw_only=True)
class DemoModel:
    """A tiny random-weight model the ``demo`` profile builds locally on first use."""

    model_id: str
    """The id shown for the demo function, e.g. ``warmgate-demo/tiny-llama``."""
    build: Callable[[Path], None]
    """Writes the model into an empty directory (``save_pretrained`` and friends)."""
    price: Price | None = None
    """The example price demo functions carry, so every demo response is quoted."""


@dataclass(frozen=True, kw_only=True)
class PipelineSpec:
    """A pipeline as a plugin registers it through ``register_pipelines(register)``."""

    name: str
    """Pipeline name as Livepeer spells it, e.g. ``text-to-image``."""
    request: type
    """msgspec Struct of the request body; multipart file fields are typed ``File``."""
    response: type
    """msgspec Struct of the JSON response (used for the OpenAPI document)."""
    load: Loader | None = None
    """``load(model_id, options) -> runner``; required unless the spec ``serves`` another pipeline."""
    default_model_id: str = ""
    """Model served when a request leaves the model id blank and no function is configured."""
    paths: tuple[str, ...] = ()
    """HTTP paths (POST); defaults to ``/{name}``. Trailing-slash variants are added."""
    encoding: Literal["json", "multipart"] = "json"
    """How the request body arrives."""
    model_field: str = "model_id"
    """Request field naming the model (``model`` for OpenAI-style bodies)."""
    price_unit: PriceUnit = PriceUnit.REQUEST
    """What one billed unit is."""
    units: Callable[[Any], int] | None = None
    """``units(request)``: billed units of a validated request, for its price quote (LLM:
    max_tokens); ``None`` bills one unit per request."""
    summary: str = ""
    description: str = ""
    operation_id: str = ""
    tags: tuple[str, ...] = ("generate",)
    wire: Literal["livepeer", "openai", "anthropic", "ollama"] = "livepeer"
    """The API family the route speaks, for what it answers the way that API does: an unknown
    model is a 400 on a Livepeer route (as the ai-runner answers, a typed error in the
    ``livepeer-ai`` SDK) and a 404 on the others (``NotFoundError`` in the ``openai`` SDK)."""
    exception_handlers: Mapping[type[Exception], Callable[[Any, Any], Any]] | None = None
    """Litestar exception handlers for this spec's routes, for a wire format with its own error
    body (Anthropic's, Ollama's); ``None`` answers the gateway's ``{"detail": {"msg": ...}}``."""
    model_names: Callable[[Any], Iterable[str]] | None = None
    """``model_names(function_config)``: more names a served function answers to on this spec's
    routes (Ollama's ``llama3.1:8b`` for ``meta-llama/Meta-Llama-3.1-8B-Instruct``)."""
    max_body_size: int | None = None
    """Bytes; ``None`` takes the gateway's ``max_body_size``."""
    stream_media_type: str = "text/event-stream"
    """Content type when the runner streams."""
    demo: DemoModel | None = None
    """Tiny model for ``--profile demo`` (a shorthand for ``demos=(demo,)``; with ``demos``, the
    first of them)."""
    demos: tuple[DemoModel, ...] = ()
    """Every tiny model ``--profile demo`` serves on this pipeline, one function each (a chat model
    and a vision-language one for ``llm``); the first is the one a blank model id picks."""
    serves: str = ""
    """Serve the functions of another pipeline: a second wire format for the same models (OpenAI
    chat in front of ``llm``). Such a spec has no functions, loader or demo model of its own."""
    prepare: Callable[[Any, dict[str, Any]], Any] | None = None
    """``prepare(request, options) -> prepared``: runs in a worker thread after validation and
    before the function is acquired, so bad input (an undecodable upload, too many pixels) is
    rejected without a queue wait or a cold start. ``options`` are the function's configured
    options. ``units`` and the runner receive what it returns."""
    decode: Callable[[bytes], Any] | None = None
    """``decode(body) -> request`` for a JSON body, instead of decoding it as ``request``: for a
    wire format that must keep what its struct does not declare (OpenAI chat's unknown fields,
    relayed to engines that know them). It raises ``ClientError``/``RequestValidationError``."""
    invoke: Callable[[Any, Any], Any] | None = None
    """``invoke(runner, request)``: how this spec's requests call the runner; default
    ``runner(request)``. It runs on the event loop, so it returns an awaitable, an async
    iterator or a value, and never blocks."""
    engine_modules: tuple[str, ...] = ()
    """Modules ``load`` imports before it can load a model (``torch``, ``transformers``...): a ray
    function's standby worker imports them ahead of its first request (``scaling.standby``)."""
    relays: Callable[[Mapping[str, Any]], bool] | None = None
    """``relays(options)``: whether a local function with these options only relays to a server
    outside the gateway (an engine's HTTP API) and holds no model itself, so it may run in every
    process of ``serve --workers``. ``None``: a local function holds its model in process."""
    plugin: str = field(default="", compare=False)
    """Filled in by the core: the plugin that registered the spec."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"pipeline name {self.name!r} must be a non-empty path segment")
        if not (isinstance(self.request, type) and issubclass(self.request, msgspec.Struct)):
            raise TypeError(f"pipeline {self.name!r}: request must be a msgspec.Struct subclass, got {self.request!r}")
        if self.demo is not None and self.demos and self.demos[0] is not self.demo:
            raise ValueError(f"pipeline {self.name!r}: give demo or demos, not both")
        object.__setattr__(self, "demos", tuple(self.demos) or ((self.demo,) if self.demo is not None else ()))
        object.__setattr__(self, "demo", self.demos[0] if self.demos else None)
        ids = [demo.model_id for demo in self.demos]
        if len(set(ids)) != len(ids):
            raise ValueError(f"pipeline {self.name!r}: demo model ids must differ, got {ids}")
        if self.serves:
            if self.load is not None or self.demos:
                raise ValueError(f"pipeline {self.name!r} serves {self.serves!r}: it takes no load or demo of its own")
        elif not callable(self.load):
            raise TypeError(f"pipeline {self.name!r}: load must be callable, got {self.load!r}")
        if self.prepare is not None and not callable(self.prepare):
            raise TypeError(f"pipeline {self.name!r}: prepare must be callable, got {self.prepare!r}")
        if self.decode is not None and not callable(self.decode):
            raise TypeError(f"pipeline {self.name!r}: decode must be callable, got {self.decode!r}")
        if self.invoke is not None and not callable(self.invoke):
            raise TypeError(f"pipeline {self.name!r}: invoke must be callable, got {self.invoke!r}")
        if self.wire not in ("livepeer", "openai", "anthropic", "ollama"):
            raise ValueError(f"pipeline {self.name!r}: wire must be 'livepeer', 'openai', 'anthropic' or 'ollama'")
        if self.encoding not in ("json", "multipart"):
            raise ValueError(f"pipeline {self.name!r}: encoding must be 'json' or 'multipart'")
        if not self.paths:
            object.__setattr__(self, "paths", (f"/{self.name}",))
        for path in self.paths:
            if not path.startswith("/") or path.endswith("/"):
                raise ValueError(f"pipeline {self.name!r}: path {path!r} must start and not end with '/'")
        if self.file_fields and self.encoding != "multipart":
            raise ValueError(f"pipeline {self.name!r}: File fields {self.file_fields} need encoding='multipart'")

    def demo_model(self, model_id: str) -> DemoModel | None:
        """The demo model served as ``model_id``, if one is."""
        return next((demo for demo in self.demos if demo.model_id == model_id), None)

    @property
    def file_fields(self) -> tuple[str, ...]:
        """Names of the request fields that carry uploaded files."""
        hints = typing.get_type_hints(self.request)
        return tuple(f.name for f in msgspec.structs.fields(self.request) if _is_file_type(hints[f.name]))

    @property
    def request_fields(self) -> tuple[msgspec.structs.FieldInfo, ...]:
        return msgspec.structs.fields(self.request)


class SpecBase:
    """The fields several pipelines share, declared once: ``base.spec(name=..., request=...,
    load=...)`` is a ``PipelineSpec`` with the base's fields under the ones given, and
    ``base.extend(...)`` a narrower base. A spec made from a base that leaves ``summary`` and
    ``operation_id`` blank gets them from its name, as Livepeer spells them (``image-to-video``:
    ``Image To Video``, ``genImageToVideo``)."""

    __slots__ = ("fields",)

    def __init__(self, **shared: Any) -> None:
        unknown = set(shared) - {f.name for f in fields(PipelineSpec)}
        if unknown:
            raise TypeError(f"SpecBase: {', '.join(sorted(unknown))} not PipelineSpec fields")
        self.fields = shared

    def extend(self, **shared: Any) -> SpecBase:
        return SpecBase(**{**self.fields, **shared})

    def spec(self, **own: Any) -> PipelineSpec:
        merged = {**self.fields, **own}
        summary = merged.setdefault("summary", merged["name"].replace("-", " ").title())
        merged.setdefault("operation_id", "gen" + summary.replace(" ", ""))
        return PipelineSpec(**merged)


def _is_file_type(annotation: Any) -> bool:
    if annotation is File:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_is_file_type(a) for a in typing.get_args(annotation))
    return False
