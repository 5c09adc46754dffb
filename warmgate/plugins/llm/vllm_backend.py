"""vLLM (or any OpenAI-compatible engine) behind an LLM function.

*External*: ``options.url`` names a running server (vLLM, llama.cpp's llama-server, another
warmgate); warmgate relays chat requests to its ``/v1/chat/completions``.

*Managed*: without ``url``, a cold start launches the engine as a child process on a free
127.0.0.1 port, waits for its ``/health``, relays to it, and stops it when the function scales
to zero, so its GPU memory is really given back. The default command is vLLM's OpenAI server
(``python -m vllm.entrypoints.openai.api_server``; its ``vllm`` CLI is not used because the
CPU distribution breaks it), run by ``options.python`` so vLLM can live in its own virtual
environment; ``options.engine`` becomes its flags (``max_model_len: 4096`` →
``--max-model-len 4096``, ``enforce_eager: true`` → ``--enforce-eager``). ``options.command``
replaces the whole command for other engines, with ``{python}``, ``{model}``, ``{served}`` and
``{port}`` filled in. ``options.tool_parser`` (``hermes``, ``llama3_json``, ``mistral``...)
starts it with ``--enable-auto-tool-choice --tool-call-parser <parser>``, so it answers ``tools``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import structlog

from warmgate.core.http.errors import ClientError, WarmgateError
from warmgate.core.tracing import outgoing_headers
from warmgate.plugins.llm.backend import (
    Completion,
    Delta,
    EngineFailed,
    EngineTimeout,
    EngineUnavailable,
    GenerationParams,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

__all__ = ["ManagedEngine", "OpenAICompatibleBackend", "load_vllm"]

_log = structlog.get_logger("warmgate.llm.vllm")
_VLLM_MODULE = "vllm.entrypoints.openai.api_server"
_CHILDREN_GRACE = 10.0
"""Seconds the engine's own processes get to exit after it has (see ``stop``)."""


async def load_vllm(model_id: str, options: dict[str, Any]) -> OpenAICompatibleBackend:
    """Connect to ``options.url``, or launch a managed engine for ``model_id`` and connect to it."""
    served = str(options.get("served_model_name") or model_id)
    timeout = float(options.get("timeout", 600))
    if options.get("url"):
        backend = await OpenAICompatibleBackend.connect(str(options["url"]), served, token=options.get("token"),
                                                        timeout=timeout)
    else:
        engine = ManagedEngine(model_id, served, options)
        await engine.start()
        try:
            backend = await OpenAICompatibleBackend.connect(engine.base_url, served, timeout=timeout)
        except BaseException:
            await engine.stop()
            raise
        backend.engine = engine
    backend.tokenizer_id = model_id
    return backend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_flags(engine: dict[str, Any]) -> list[str]:
    """``{"max_model_len": 4096, "enforce_eager": True}`` -> ``["--max-model-len", "4096", "--enforce-eager"]``."""
    flags: list[str] = []
    for key, value in engine.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, str(value)]
    return flags


class ManagedEngine:
    """An engine server run as a child process for one function."""

    def __init__(self, model_id: str, served: str, options: dict[str, Any]) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        python = str(options.get("python") or sys.executable)
        fill = {"python": python, "model": model_id, "served": served, "port": str(self.port)}
        if options.get("command"):
            self.command = [str(part).format(**fill) for part in options["command"]]
        else:
            self.command = [python, "-m", _VLLM_MODULE, "--model", model_id, "--served-model-name", served,
                            "--host", "127.0.0.1", "--port", str(self.port), *engine_flags(options.get("engine", {}))]
            if options.get("tool_parser"):  # vLLM parses tool calls only when told the model's format
                self.command += ["--enable-auto-tool-choice", "--tool-call-parser", str(options["tool_parser"])]
        self.env = {**os.environ, **{k: str(v) for k, v in options.get("env", {}).items()}}
        self.startup_timeout = float(options.get("startup_timeout", 900))
        self.process: asyncio.subprocess.Process | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=40)
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        _log.info("engine_starting", command=" ".join(self.command))
        started = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            *self.command, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read_output())
        try:
            await self._wait_healthy()
        except BaseException:
            await self.stop()
            raise
        _log.info("engine_ready", pid=self.process.pid, port=self.port, seconds=round(time.monotonic() - started, 2))

    async def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            _log.debug("engine_output", line=line)

    async def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"the engine exited with code {self.process.returncode} before it was "
                                       f"ready; last output: {self._tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the engine was not healthy after {self.startup_timeout:g}s; "
                                       f"last output: {self._tail()}")
                await asyncio.sleep(0.25)

    def _tail(self) -> str:
        return " | ".join(list(self.output)[-8:]) or "(none)"

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; the engine's memory is gone when this returns."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
            _log.info("engine_stopped", pid=process.pid, returncode=process.returncode)
        reader, self._reader = self._reader, None
        if reader is None:
            return
        # vLLM's own processes (EngineCore, its workers) share the engine's output pipe and may
        # outlive it by a moment (exporting their last spans): the pipe ends when the last one
        # exits. Those still there after a grace period are killed (they are the engine's
        # session, started with it), so no process and no open pipe is left behind.
        done, _ = await asyncio.wait({reader}, timeout=_CHILDREN_GRACE)
        if not done and process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.wait({reader}, timeout=5)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def _stop_sequence(choice: dict[str, Any]) -> str | None:
    """vLLM's ``stop_reason``: the stop string that ended the choice (a token id for a stop token)."""
    reason = choice.get("stop_reason")
    return reason if isinstance(reason, str) else None


class _Chunk(msgspec.Struct):
    choices: list[dict[str, Any]] = []
    usage: dict[str, Any] | None = None  # vLLM adds e.g. prompt_tokens_details: null
    error: dict[str, Any] | None = None


class _Completion(msgspec.Struct):
    choices: list[dict[str, Any]] = []
    usage: dict[str, Any] = {}


class _TextLogprobs(msgspec.Struct):
    """The legacy completions' shape of a choice's logprobs, as vLLM answers it."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None] | None = None


def _logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    """The engine's logprobs of a choice (chat's ``logprobs.content``, or the legacy
    completions' lists), checked into the runner's shape."""
    logprobs = choice.get("logprobs") or {}
    try:
        if "tokens" in logprobs:
            return _from_text_logprobs(msgspec.convert(logprobs, _TextLogprobs))
        content = logprobs.get("content")
        return None if content is None else msgspec.convert(content, list[TokenLogprob])
    except (msgspec.ValidationError, ValueError) as exc:  # ValueError: lists of different lengths
        raise EngineFailed(f"the engine answered logprobs warmgate cannot read: {exc}") from None


def _from_text_logprobs(legacy: _TextLogprobs) -> list[TokenLogprob]:
    tops = legacy.top_logprobs or [None] * len(legacy.tokens)
    return [TokenLogprob(token, -9999.0 if logprob is None else logprob, list(token.encode()),
                         [TopLogprob(t, v, list(t.encode())) for t, v in (candidates or {}).items()])
            for token, logprob, candidates in zip(legacy.tokens, legacy.token_logprobs, tops, strict=True)]


class OpenAICompatibleBackend:
    """Relays chat to an OpenAI-compatible server, asking for usage in streams.

    The relay uses aiohttp, not httpx (the gateway's client elsewhere): measured here at c=16,
    an httpx ``AsyncClient`` request cost 2.1 ms of CPU and an aiohttp one 0.25 ms, and on a
    machine where the engine needs the same cores that difference was most of the relay's cost.
    """

    backend_name = "vllm"
    features = frozenset({"prompt", "stop", "seed", "image_content", "response_format", "penalties", "logit_bias",
                          "tools", "tool_choice", "logprobs"})
    forwards_unknown_fields = True

    def __init__(self, session: Any, root: str, served: str, context_length: int | None) -> None:
        self.session = session
        self.root = root
        self.url = f"{root}/v1/chat/completions"
        self.completions_url = f"{root}/v1/completions"
        import yarl  # aiohttp's, imported with it (connect)

        self._targets = {False: yarl.URL(self.url), True: yarl.URL(self.completions_url)}
        """Parsed once: aiohttp parses a URL string on every request."""
        self.served = served
        self.context_length = context_length
        self.engine: ManagedEngine | None = None
        self.tokenizer_id: str | None = None
        """Where the model's tokenizer may be found locally, for answers the engine sent no usage with."""
        self._tokenizer: Any = None
        self._tokenizer_tried = False
        self._chunk = msgspec.json.Decoder(_Chunk)
        self._completion = msgspec.json.Decoder(_Completion)
        self._encode = msgspec.json.Encoder().encode

    @classmethod
    async def connect(cls, url: str, served: str, token: str | None = None,
                      timeout: float = 600) -> OpenAICompatibleBackend:
        """``timeout``: seconds the engine may stay silent (before its first byte, or between
        two) before the request is a 504."""
        try:
            import aiohttp
        except ImportError as exc:
            raise ImportError(f"the vllm LLM backend needs the [vllm] extra (pip install 'warmgate[vllm]'): {exc}") from exc
        root = url.rstrip("/").removesuffix("/v1")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # no cookie jar: an engine's cookies are no client's, and keeping them costs every request
        session = aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0),
                                        cookie_jar=aiohttp.DummyCookieJar(),
                                        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=timeout))
        try:
            async with session.get(f"{root}/v1/models") as models:
                models.raise_for_status()
                listing = await models.json()
        except (aiohttp.ClientError, ValueError) as exc:
            await session.close()
            raise ConnectionError(f"the OpenAI-compatible server at {root} did not answer /v1/models: {exc}") from exc
        cards = {card.get("id"): card for card in listing.get("data", [])}
        if served not in cards:
            await session.close()
            raise LookupError(f"{root} does not serve {served!r}; it serves {', '.join(map(str, cards)) or 'nothing'}")
        return cls(session, root, served, cards[served].get("max_model_len"))

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> None:
        return None  # the engine checks the context itself and answers 400, which is relayed

    async def count_tokens(self, text: str) -> int | None:
        """``text``'s tokens by the model's tokenizer when it is on this machine (a local
        directory or the Hugging Face cache; never downloaded), else None. Loaded the first time
        an engine answers without usage, which a well-behaved engine never does."""
        if not self._tokenizer_tried:
            self._tokenizer_tried = True
            self._tokenizer = await asyncio.to_thread(_local_tokenizer, self.tokenizer_id)
        if self._tokenizer is None:
            return None
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def _body(self, params: GenerationParams, stream: bool) -> bytes:
        """The request as the engine takes it: OpenAI's fields, and the ones OpenAI does not
        define verbatim (vLLM's ``min_p``, ``chat_template_kwargs``...), which never override ours."""
        prompt = {"messages": params.messages} if params.prompt is None else {"prompt": params.prompt}
        body: dict[str, Any] = {
            **params.unknown_fields, "model": self.served, **prompt, "max_tokens": params.max_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if params.top_k > 0:
            body["top_k"] = params.top_k
        if params.seed is not None:
            body["seed"] = params.seed
        if params.logprobs and params.prompt is None:
            body.update(logprobs=True, top_logprobs=params.top_logprobs or 0)
        elif params.logprobs:  # the legacy completions take the number of candidates
            body["logprobs"] = params.top_logprobs or 0
        optional = {"tools": params.tools, "tool_choice": params.tool_choice,
                    "parallel_tool_calls": params.parallel_tool_calls, "stop": params.stop,
                    "presence_penalty": params.presence_penalty, "frequency_penalty": params.frequency_penalty,
                    "logit_bias": params.logit_bias, "response_format": params.response_format}
        body.update({name: value for name, value in optional.items() if value or value is False})
        return self._encode(body)

    def _post(self, params: GenerationParams, stream: bool) -> Any:
        url = self._targets[params.prompt is not None]  # a raw prompt: the legacy completions
        trace = outgoing_headers()  # the engine (vLLM) continues the request's trace under its engine span
        return self.session.post(url, data=self._body(params, stream),
                                 headers=_JSON_HEADERS if trace is None else {**_JSON_HEADERS, **trace})

    async def complete(self, params: GenerationParams) -> Completion:
        """One answer without streaming: for non-streaming requests the engine then sends one
        JSON body instead of a chunk per token, which costs it (and the relay) far less."""
        with self._errors():
            async with self._post(params, stream=False) as response:
                content = await response.read()
                if response.status != 200:
                    raise _upstream_error(response.status, content)
        answer = self._completion.decode(content)
        if not answer.choices:
            raise EngineFailed("the engine answered without a choice")
        choice = answer.choices[0]
        message = choice.get("message") or {}
        calls = [ToolCallDelta(index=i, id=call.get("id"), name=(call.get("function") or {}).get("name"),
                               arguments=(call.get("function") or {}).get("arguments") or "")
                 for i, call in enumerate(message.get("tool_calls") or ())]
        text = message.get("content") or choice.get("text") or ""  # chat, or a text completion
        return Completion(text, _finish(choice.get("finish_reason")), _usage(answer.usage), calls, _logprobs(choice),
                          _stop_sequence(choice))

    async def generate(self, params: GenerationParams) -> AsyncIterator[Delta]:
        finish: str | None = None
        stop: str | None = None
        with self._errors():
            async with self._post(params, stream=True) as response:
                if response.status != 200:
                    raise _upstream_error(response.status, await response.read())
                async for raw in response.content:
                    if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                        continue
                    chunk = self._chunk.decode(raw[6:])
                    if chunk.error:
                        raise EngineFailed(f"the engine failed: {chunk.error.get('message', chunk.error)}")
                    for choice in chunk.choices:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or choice.get("text")  # chat, or a text_completion chunk
                        if text:
                            # an OpenAI-compatible engine streams a token a chunk
                            yield Delta(text=text, tokens=1, logprobs=_logprobs(choice))
                        if delta.get("tool_calls"):
                            yield Delta(tool_calls=[_tool_call_piece(call) for call in delta["tool_calls"]], tokens=1)
                        finish = choice.get("finish_reason") or finish
                        stop = _stop_sequence(choice) or stop
                    if chunk.usage:
                        yield Delta(finish_reason=_finish(finish), usage=_usage(chunk.usage), stop_sequence=stop)
                        return
        if finish is not None:  # an engine that ignores stream_options: the runner counts the tokens
            yield Delta(finish_reason=_finish(finish), stop_sequence=stop)
            return
        raise EngineFailed("the engine closed the stream before finishing the completion")

    @contextlib.contextmanager
    def _errors(self) -> Any:
        """aiohttp's failures as the statuses they mean: unreachable 503, silent 504, cut off 502."""
        import aiohttp

        try:
            yield
        except WarmgateError:
            raise
        except aiohttp.ConnectionTimeoutError as exc:
            raise EngineUnavailable(f"the engine at {self.root} did not accept a connection: {exc}") from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise EngineTimeout(f"the engine at {self.root} did not answer in time: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise EngineUnavailable(f"the engine at {self.root} is unreachable: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise EngineFailed(f"the engine at {self.root} broke off: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.session.close()
        if self.engine is not None:
            await self.engine.stop()


_JSON_HEADERS = {"Content-Type": "application/json"}


def _upstream_error(status: int, content: bytes) -> Exception:
    """The engine's error as ours: its 4xx are the client's fault (400), the rest a failure."""
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        body = {"message": content.decode(errors="replace")}
    detail = body.get("detail")
    message = ((body.get("error") or {}).get("message") or body.get("message")
               or (detail.get("msg") if isinstance(detail, dict) else detail) or content.decode(errors="replace"))
    text = f"the engine answered {status}: {message}"
    if status == 503:
        return EngineUnavailable(text)
    return ClientError(text) if 400 <= status < 500 else EngineFailed(text)


def _finish(reason: str | None) -> str:
    return reason if reason in ("length", "tool_calls") else "stop"


def _tool_call_piece(call: dict[str, Any]) -> ToolCallDelta:
    function = call.get("function") or {}
    return ToolCallDelta(index=call.get("index", 0), id=call.get("id"), name=function.get("name"),
                         arguments=function.get("arguments") or "")


def _usage(reported: dict[str, Any] | None) -> Usage | None:
    """The engine's usage; None when it reported no completion count (the runner then counts)."""
    if not reported or reported.get("completion_tokens") is None:
        return Usage(reported.get("prompt_tokens") or 0, 0, exact=False) if reported else None
    return Usage(reported.get("prompt_tokens") or 0, reported["completion_tokens"])


def _local_tokenizer(model_id: str | None) -> Any:
    """The model's tokenizer if transformers is installed and the files are on this machine."""
    if not model_id:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_id, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - not at hand, for whatever reason: the quote is billed
        _log.info("tokenizer_not_at_hand", model_id=model_id, reason=f"{type(exc).__name__}: {exc}")
        return None
