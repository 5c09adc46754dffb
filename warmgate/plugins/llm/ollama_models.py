"""Ollama's model routes on the gateway's functions: ``/api/tags`` (every LLM and embeddings
function), ``/api/ps`` (the loaded ones, ``expires_at`` from their idle timeout), ``/api/show``,
``/api/pull`` (an Ollama-backed function's pull goes to its engine; any other function loads)
and ``/api/version``."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Stream

from warmgate.core.functions.function import Function, FunctionState
from warmgate.core.http.decode import json_body
from warmgate.core.http.errors import NotFound
from warmgate.plugins.llm import ollama_wire as ow
from warmgate.plugins.llm.wire_errors import error_handlers

__all__ = ["OLLAMA_API_VERSION", "ollama_routes", "render_error", "route_names"]

OLLAMA_API_VERSION = "0.12.0"
"""The Ollama version whose API warmgate answers (clients gate features on it)."""

_encoder = msgspec.json.Encoder()
_STARTED = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
_FOREVER = "2318-01-01T00:00:00Z"  # what Ollama shows for a model kept loaded without end
_LOADED = (FunctionState.WARM, FunctionState.IDLE)
_FORMATS = {"ollama": "gguf", "transformers": "safetensors", "vllm": "safetensors"}


def route_names(config: Any) -> Iterator[str]:
    """``name:latest`` for names without a tag, as Ollama clients spell them."""
    for name in (config.model_id, config.name, *config.aliases):
        if ":" not in name:
            yield f"{name}:latest"


def render_error(status: int, message: str) -> tuple[int, dict[str, str]]:
    """Ollama's ``{"error": ...}``; a body that does not fit the schema is its 400."""
    return (400 if status == 422 else status), {"error": message}


def _json(value: Any) -> Response[bytes]:
    return Response(_encoder.encode(value), media_type="application/json")


def _details(fn: Function) -> ow.OllamaModelDetails:
    backend = str(fn.config.options.get("backend", "transformers"))
    return ow.OllamaModelDetails(format=_FORMATS.get(backend, backend), family=fn.config.pipeline)


def _digest(fn: Function) -> str:
    return hashlib.sha256(fn.config.model_id.encode()).hexdigest()


def _context_length(fn: Function) -> int | None:
    """The loaded engine's context, else the model directory's ``config.json`` (no load)."""
    backend = getattr(fn.runner, "backend", None)
    if getattr(backend, "context_length", None):
        return backend.context_length  # type: ignore[union-attr]
    config = Path(fn.config.model_id) / "config.json"
    if fn.config.demo or not config.is_file():
        return None
    try:
        value = json.loads(config.read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) else None


def _expires_at(fn: Function) -> str:
    timeout = fn.idle_timeout
    if fn.config.keep_warm or (timeout <= 0 and fn.keep_alive != 0):
        return _FOREVER
    since = time.time() if fn.in_flight else (fn.last_used_at or time.time())
    return datetime.datetime.fromtimestamp(since + timeout, datetime.UTC).isoformat().replace("+00:00", "Z")


def ollama_routes(llm: str, embeddings: str) -> list[Any]:
    served = (llm, embeddings)
    handlers = error_handlers(render_error)

    def functions(request: Request[Any, Any, Any]) -> list[Function]:
        return [f for f in request.app.state.functions.functions.values() if f.config.pipeline in served]

    def find(request: Request[Any, Any, Any], model: str) -> Function:
        manager = request.app.state.functions
        for pipeline, route in ((llm, "ollama-chat"), (embeddings, "ollama-embed")):
            try:
                return manager.resolve(pipeline, model, "ollama", route)
            except NotFound:
                continue
        raise NotFound(f"model '{model}' not found")

    @get(["/api/tags"], sync_to_thread=False, tags=["ollama"], summary="Ollama models", operation_id="ollamaTags",
         opt={"response": ow.OllamaModels}, exception_handlers=handlers)
    def tags(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Every LLM and embeddings function, as Ollama lists its local models."""
        return _json(ow.OllamaModels([ow.OllamaModel(name=f.config.model_id, model=f.config.model_id, modified_at=_STARTED,
                                             size=f.memory_bytes or 0, digest=_digest(f), details=_details(f))
                              for f in functions(request)]))

    @get(["/api/ps"], sync_to_thread=False, tags=["ollama"], summary="Ollama running models", operation_id="ollamaPs",
         opt={"response": ow.OllamaRunningModels}, exception_handlers=handlers)
    def ps(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The loaded functions, with when they unload if no request comes."""
        return _json(ow.OllamaRunningModels([
            ow.OllamaRunningModel(name=f.config.model_id, model=f.config.model_id, size=f.memory_bytes or 0,
                            digest=_digest(f), details=_details(f), expires_at=_expires_at(f),
                            context_length=_context_length(f))
            for f in functions(request) if f.state in _LOADED]))

    @post(["/api/show"], status_code=200, tags=["ollama"], summary="Ollama model details",
          operation_id="ollamaShow", opt={"request": ow.OllamaShowRequest, "response": ow.OllamaShowResponse, "errors": [404]},
          exception_handlers=handlers)
    async def show(request: Request[Any, Any, Any]) -> Response[bytes]:
        """A function's details and context length, without loading it."""
        body = json_body(await request.body(), ow.OllamaShowRequest)
        fn = find(request, body.model or body.name)
        context = _context_length(fn)
        info: dict[str, Any] = {"general.architecture": fn.config.pipeline, "general.name": fn.config.model_id}
        if context:
            info[f"{fn.config.pipeline}.context_length"] = context
        capabilities = ["embedding"] if fn.config.pipeline == embeddings else ["completion"]
        features = getattr(getattr(fn.runner, "backend", None), "features", ())
        capabilities += [name for feature, name in (("tools", "tools"), ("image_content", "vision"))
                         if feature in features]
        return _json(ow.OllamaShowResponse(details=_details(fn), model_info=info, capabilities=capabilities,
                                     modified_at=_STARTED))

    @post(["/api/pull"], status_code=200, tags=["ollama"], summary="Ollama pull", operation_id="ollamaPull",
          opt={"request": ow.OllamaPullRequest, "response": ow.OllamaProgress, "errors": [401, 403, 404]},
          exception_handlers=handlers)
    async def pull(request: Request[Any, Any, Any]) -> Response[Any]:
        """Load a function (streaming progress); an Ollama-backed one's engine pulls the model."""
        app = request.app
        caller = await app.state.auth(request.scope, app) if app.state.auth.enabled else None
        body = json_body(await request.body(), ow.OllamaPullRequest)
        fn = find(request, body.model or body.name)
        if caller is not None:
            caller.check_allowed(fn.name, fn.config.aliases, fn.config.pipeline)
        progress = _engine_pull(fn) if fn.config.options.get("backend") == "ollama" else _load(fn)
        if body.stream:
            return Stream(_lines(progress), media_type="application/x-ndjson")
        last: Any = None
        async for last in progress:
            if "error" in last:
                return Response(_encoder.encode(last), status_code=500, media_type="application/json")
        return _json(last)

    @get(["/api/version"], sync_to_thread=False, tags=["ollama"], summary="Ollama version",
         operation_id="ollamaVersion", opt={"response": ow.OllamaVersion}, exception_handlers=handlers)
    def version() -> Response[bytes]:
        return _json(ow.OllamaVersion(OLLAMA_API_VERSION))

    return [tags, ps, show, pull, version]


async def _lines(progress: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for event in progress:
        yield _encoder.encode(event) + b"\n"


async def _load(fn: Function) -> AsyncIterator[dict[str, Any]]:
    yield {"status": f"loading {fn.config.model_id}"}
    try:
        await fn.ensure_loaded()
    except Exception as exc:  # recorded on the function; the client hears it as Ollama's error line
        yield {"error": fn.last_error or str(exc)}
        return
    yield {"status": "success"}


async def _engine_pull(fn: Function) -> AsyncIterator[dict[str, Any]]:
    """The engine's own pull progress, relayed line by line."""
    import httpx

    from warmgate.plugins.llm.ollama_names import ollama_name

    host = str(fn.config.options.get("host") or "http://127.0.0.1:11434").rstrip("/")
    name = ollama_name(fn.config.model_id, fn.config.options.get("names"))
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=600)) as client:
            async with client.stream("POST", f"{host}/api/pull", json={"model": name, "stream": True}) as answer:
                async for line in answer.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
    except (httpx.HTTPError, ValueError) as exc:
        yield {"error": f"Ollama at {host} could not pull {name!r}: {exc}"}
