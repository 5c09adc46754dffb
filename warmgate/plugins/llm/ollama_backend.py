"""Generation on an Ollama server through the official ``ollama`` client: the gateway keeps
admission, billing and the wire formats while Ollama owns the weights and the GPU.

A cold start pulls the model when the server lacks it; closing the runner (scale to zero) asks
Ollama to unload it, so idle models free the GPU on the Ollama host too."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import structlog

from warmgate.core.functions.function import loading_function
from warmgate.core.http.errors import RequestValidationError
from warmgate.plugins.llm.backend import (
    Delta,
    EngineFailed,
    EngineTimeout,
    EngineUnavailable,
    GenerationParams,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
    text_messages,
)
from warmgate.plugins.llm.ollama_names import ollama_name

__all__ = ["DEFAULT_HOST", "OllamaBackend", "OllamaError", "load_ollama"]

DEFAULT_HOST = "http://127.0.0.1:11434"
_CONNECT_TIMEOUT = 10.0
_UNLOAD_TIMEOUT = 10.0


class OllamaError(RuntimeError):
    """Ollama failed or could not be reached; the message names the host and the model."""


def _client_module() -> Any:
    try:
        import ollama
    except ImportError as exc:
        raise ImportError(f"the ollama LLM backend needs the [ollama] extra "
                          f"(pip install 'warmgate[ollama]'): {exc}") from exc
    return ollama


async def load_ollama(model_id: str, options: dict[str, Any]) -> OllamaBackend:
    """Connect to Ollama, pull the model if the server lacks it, and read its context length.

    Options: ``host`` (else ``OLLAMA_HOST``, else ``http://127.0.0.1:11434``), ``names`` (Hugging
    Face id -> Ollama name, consulted before the built-in table), ``keep_alive`` (how long Ollama
    keeps the model loaded between requests, e.g. ``"5m"`` or seconds; default: the function's
    ``idle_timeout``), ``num_ctx`` (the context window Ollama runs the model with), ``timeout`` (seconds to
    wait for Ollama to answer; unset waits as long as a slow model load takes)."""
    ollama = _client_module()
    name = ollama_name(model_id, options.get("names"))
    host = str(options.get("host") or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST)
    timeout = options.get("timeout")
    client = ollama.AsyncClient(host=host, timeout=httpx.Timeout(timeout, connect=_CONNECT_TIMEOUT))
    log = structlog.get_logger("warmgate.llm.ollama").bind(host=host, model=name, model_id=model_id)
    try:
        show = await _show_or_pull(client, ollama, name, host, log)
        num_ctx = options.get("num_ctx")
        known = [c for c in (num_ctx, _context_length(show)) if c]
        context = min(known) if known else None  # Ollama truncates to num_ctx, whatever the model allows
    except BaseException:
        await client.close()
        raise
    log.info("ollama_model_ready", context_length=context)
    return OllamaBackend(client, host=host, name=name, keep_alive=options.get("keep_alive", _idle_timeout()),
                         num_ctx=num_ctx, context_length=context, log=log)


async def _show_or_pull(client: Any, ollama: Any, name: str, host: str, log: Any) -> Any:
    """``show`` the model; on 404 pull it (logging progress) and ``show`` again. None when the
    server answers without model details."""
    try:
        return await _show(client, name, host)
    except ollama.ResponseError as exc:
        if exc.status_code != 404:
            raise OllamaError(f"Ollama at {host} could not describe model {name!r}: {exc.error}") from exc
    await _pull(client, ollama, name, host, log)
    try:
        return await _show(client, name, host)
    except ollama.ResponseError as exc:
        raise OllamaError(f"Ollama at {host} pulled {name!r} but cannot describe it: {exc.error}") from exc


async def _show(client: Any, name: str, host: str) -> Any:
    import pydantic

    try:
        return await client.show(name)
    except pydantic.ValidationError:
        return None  # the model is there; the server just sent no model_info
    except (ConnectionError, httpx.TransportError) as exc:
        raise OllamaError(_unreachable(host, name, exc)) from exc


async def _pull(client: Any, ollama: Any, name: str, host: str, log: Any) -> None:
    started = time.monotonic()
    log.info("ollama_pull_started")
    last: tuple[str | None, int] = (None, -1)
    status = None
    try:
        async for progress in await client.pull(name, stream=True):
            status = progress.status
            completed, total = progress.completed, progress.total
            step = (completed or 0) * 10 // total if total else -1
            if (status, step) != last:  # every status, and every 10% of each layer
                last = (status, step)
                log.info("ollama_pull_progress", status=status, digest=progress.digest,
                         completed=completed, total=total)
    except ollama.ResponseError as exc:
        raise OllamaError(f"Ollama at {host} could not pull model {name!r}: {exc.error}") from exc
    except (ConnectionError, httpx.TransportError) as exc:
        raise OllamaError(_unreachable(host, name, exc)) from exc
    if status != "success":
        raise OllamaError(f"Ollama at {host} stopped pulling model {name!r} at status {status!r}")
    log.info("ollama_pull_finished", seconds=round(time.monotonic() - started, 3))


def _context_length(show: Any) -> int | None:
    """``<architecture>.context_length`` from ``model_info``, when the server reports it."""
    info: Mapping[str, Any] = (show.modelinfo if show is not None else None) or {}
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if arch else None
    if value is None:
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def _idle_timeout() -> int | None:
    """The loading function's idle_timeout in seconds: Ollama then keeps the model exactly as long
    as warmgate does (warmgate unloads it explicitly at scale to zero). None: the server default."""
    fn = loading_function.get()
    timeout = fn.config.scaling.idle_timeout if fn is not None else 0
    return math.ceil(timeout) if timeout > 0 else None


def _unreachable(host: str, name: str, exc: BaseException) -> str:
    return (f"cannot reach Ollama at {host} for model {name!r} ({type(exc).__name__}: {exc}); "
            f"is `ollama serve` running there?")


def ollama_format(params: GenerationParams) -> str | dict[str, Any] | None:
    """``response_format`` as Ollama's ``format``: ``"json"``, or the JSON schema itself."""
    response_format = params.response_format or {}
    if response_format.get("type") == "json_object":
        return "json"
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or "json"
    return None


def ollama_messages(params: GenerationParams) -> list[dict[str, Any]]:
    """OpenAI messages as Ollama takes them: text content, image parts as base64 ``images``,
    assistant ``tool_calls`` with ``arguments`` as objects, and ``tool`` results named by the
    tool they answer."""
    names: dict[str, str] = {}
    messages = text_messages(params)
    for i, (message, original) in enumerate(zip(messages, params.messages, strict=True)):
        calls = []
        for j, call in enumerate(original.get("tool_calls") or ()):
            names[call["id"]] = call["function"]["name"]
            try:
                arguments = json.loads(call["function"].get("arguments") or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                raise RequestValidationError.single(["body", "messages", i, "tool_calls", j, "function", "arguments"],
                                                    "Ollama takes a call's arguments as a JSON object")
            calls.append({"function": {"name": call["function"]["name"], "arguments": arguments}})
        if calls:
            message["tool_calls"] = calls
        content = original.get("content")
        if isinstance(content, list) and any(part.get("type") == "image_url" for part in content):
            # every image URL is a data: URL by now (images.py); Ollama takes the base64 data alone
            message["images"] = [part["image_url"]["url"].partition(",")[2] for part in content
                                 if part.get("type") == "image_url"]
        if message["role"] == "tool":
            message["tool_name"] = names.get(original.get("tool_call_id") or "", "")
    return messages


def _logprobs(chunk: Any) -> list[TokenLogprob]:
    """A chunk's ``logprobs`` (Ollama 0.12.11 and later) in OpenAI's shape; its client has no
    ``bytes``, so they are the token's UTF-8."""
    return [TokenLogprob(entry.token, entry.logprob, list(entry.token.encode()),
                         [TopLogprob(top.token, top.logprob, list(top.token.encode())) for top in entry.top_logprobs or ()])
            for entry in chunk.logprobs or ()]


class OllamaBackend:
    """One model on one Ollama server; Ollama has no tokenizer endpoint, so prompt tokens are
    known only from its answers."""

    backend_name = "ollama"
    features = frozenset({"prompt", "stop", "seed", "penalties", "tools", "response_format", "image_content",
                          "logprobs"})
    forwards_unknown_fields = False  # Ollama's API is not OpenAI's: unknown fields would mean nothing to it

    def __init__(self, client: Any, *, host: str, name: str, keep_alive: int | float | str | None,
                 num_ctx: int | None, context_length: int | None, log: Any) -> None:
        self.client = client
        self.host = host
        self.name = name
        self.keep_alive = keep_alive
        self.num_ctx = num_ctx
        self.context_length = context_length
        self._log = log

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        return None

    def _options(self, params: GenerationParams) -> dict[str, Any]:
        options: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                                   "num_predict": params.max_tokens}
        if params.top_k != -1:
            options["top_k"] = params.top_k
        if params.seed is not None:
            options["seed"] = params.seed
        if params.stop:
            options["stop"] = list(params.stop)
        if params.presence_penalty:
            options["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            options["frequency_penalty"] = params.frequency_penalty
        if self.num_ctx:
            options["num_ctx"] = self.num_ctx
        return options

    async def _start(self, params: GenerationParams) -> Any:
        """The chat stream, or for a raw prompt (completions) ``generate`` with ``raw``: no template."""
        logprobs = {"logprobs": True, "top_logprobs": params.top_logprobs or 0} if params.logprobs else {}
        if params.prompt is not None:
            return await self.client.generate(model=self.name, prompt=params.prompt, raw=True, stream=True,
                                              options=self._options(params), keep_alive=self.keep_alive, **logprobs)
        tools = params.tools if params.tool_choice != "none" else None
        return await self.client.chat(model=self.name, messages=ollama_messages(params), tools=tools or None,
                                      format=ollama_format(params), stream=True, options=self._options(params),
                                      keep_alive=self.keep_alive, **logprobs)

    async def generate(self, params: GenerationParams) -> AsyncIterator[Delta]:
        import ollama

        chunks = await self._start(params)
        calls = 0
        try:
            async for chunk in chunks:
                message = getattr(chunk, "message", None)  # None: a raw ``generate`` answer
                text = chunk.response if message is None else message.content
                if text:  # Ollama streams a token a chunk
                    yield Delta(text=text, tokens=1, logprobs=_logprobs(chunk) if params.logprobs else None)
                if message is not None and message.tool_calls:  # whole calls, arguments as objects: OpenAI's are JSON strings
                    pieces = [ToolCallDelta(index=calls + i, id=f"call_{os.urandom(12).hex()}", name=call.function.name,
                                            arguments=json.dumps(dict(call.function.arguments)))
                              for i, call in enumerate(message.tool_calls)]
                    calls += len(pieces)
                    yield Delta(tool_calls=pieces, tokens=1)
                if chunk.done:
                    finish = "length" if chunk.done_reason == "length" else "stop"
                    usage = None if chunk.eval_count is None else Usage(chunk.prompt_eval_count or 0, chunk.eval_count)
                    yield Delta(finish_reason=finish, usage=usage)
                    return
            raise EngineFailed(f"Ollama at {self.host} ended the {self.name!r} stream without a final message")
        except ollama.ResponseError as exc:
            raise EngineFailed(f"Ollama at {self.host} failed generating with model {self.name!r}: {exc.error}") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError) as exc:
            raise EngineUnavailable(_unreachable(self.host, self.name, exc)) from exc
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"Ollama at {self.host} did not answer in time for model {self.name!r}: "
                                f"{type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise EngineFailed(f"Ollama at {self.host} broke off generating with model {self.name!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
        finally:
            await chunks.aclose()  # closes the HTTP stream, which makes Ollama stop generating

    async def close(self) -> None:
        """Ask Ollama to unload the model (an empty chat with ``keep_alive: 0``), then close the
        client; an unreachable server is logged, since the gateway side is released either way."""
        try:
            async with asyncio.timeout(_UNLOAD_TIMEOUT):
                await self.client.chat(model=self.name, messages=[], keep_alive=0)
            self._log.info("ollama_model_unloaded")
        except Exception as exc:  # noqa: BLE001 - unloading is best effort
            self._log.warning("ollama_unload_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            await self.client.close()
