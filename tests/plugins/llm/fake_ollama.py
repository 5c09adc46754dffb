"""An in-process stand-in for an Ollama server, speaking its documented HTTP API (docs/api.md in
the Ollama repository): ``/api/chat`` (NDJSON stream or one object; load and unload with empty
``messages``; ``tools``, see ``tool_calls_for``; ``format``, see ``instance_of``), ``/api/generate``
(a prompt; with ``raw`` it is answered as it is, else through the model's template), ``/api/embed``,
``/api/pull`` (NDJSON progress), ``/api/show``, ``/api/tags`` and ``/api/ps``.

No Ollama can run in the test environment; this lets the real ``ollama`` client and the gateway
be tested over real HTTP. Generation is deterministic: the model answers with the words of the
last user message, one word per token, so tests can predict text and token counts; an embedding is
a unit vector drawn from the text's hash, and a word is a token there too. Every request
is recorded for assertions."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

from warmgate.testing import serve

from .json_instances import instance_of

__all__ = ["ChatRecord", "FakeModel", "FakeOllama", "embedding", "run_fake_ollama"]

_encoder = msgspec.json.Encoder()
R = TypeVar("R", bound=msgspec.Struct)
_NS = 1_000_000  # durations are nanoseconds; the fake reports 1 ms per token


# -- wire types (request fields the fake reads; unknown fields are ignored) ---------------------------


class Message(msgspec.Struct):
    role: str
    content: str = ""  # the Python client drops empty fields


class ChatMessage(Message):
    images: list[str] | None = None
    """Base64 image data, without a ``data:`` prefix: Ollama refuses anything else."""


class ChatRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[ChatMessage] = []
    stream: bool = True
    options: dict[str, Any] = {}
    keep_alive: int | float | str | None = None
    tools: list[dict[str, Any]] = []
    format: str | dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int = 0


class GenerateRequest(msgspec.Struct, kw_only=True):
    model: str
    prompt: str = ""
    raw: bool = False
    stream: bool = True
    options: dict[str, Any] = {}
    keep_alive: int | float | str | None = None
    logprobs: bool = False
    top_logprobs: int = 0


class GenerateChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    logprobs: list[dict[str, Any]] | None = None


TEMPLATE = "<|user|>{prompt}<|assistant|>"
"""The fake model's template, applied to a ``generate`` prompt unless it is ``raw``."""


class ToolCallsMessage(msgspec.Struct):
    """An assistant message that calls tools: Ollama sends ``arguments`` as an object."""

    role: str
    content: str
    tool_calls: list[dict[str, Any]]


def tool_calls_for(request: ChatRequest) -> list[dict[str, Any]] | None:
    """With tools and a user message last, the fake calls the first tool, each of its required
    arguments set to that message's text; otherwise it answers in words."""
    if not request.tools or request.messages[-1].role != "user":
        return None
    function = request.tools[0]["function"]
    required = (function.get("parameters") or {}).get("required") or []
    return [{"function": {"name": function["name"],
                          "arguments": {name: request.messages[-1].content for name in required}}}]


class ChatChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    created_at: str
    message: Message
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    logprobs: list[dict[str, Any]] | None = None


def logprobs_of(piece: str, i: int, top: int) -> list[dict[str, Any]]:
    """Piece ``i``'s logprobs as Ollama (0.12.11 and later) streams them with a chunk: -0.5 - i/10,
    and ``top`` candidates ``" c0"``, ``" c1"``..."""
    tops = [{"token": f" c{j}", "logprob": -0.1 * (j + 1), "bytes": list(f" c{j}".encode())} for j in range(top)]
    return [{"token": piece, "logprob": -0.5 - i / 10, "bytes": list(piece.encode()), "top_logprobs": tops}]


class EmbedRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[str] = ""
    truncate: bool = True
    dimensions: int | None = None
    options: dict[str, Any] = {}
    keep_alive: int | float | str | None = None


class EmbedResponse(msgspec.Struct, kw_only=True):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class PullRequest(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""  # the older spelling of ``model``
    insecure: bool = False
    stream: bool = True


class Progress(msgspec.Struct, omit_defaults=True):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class ShowRequest(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""
    verbose: bool = False


class ModelDetails(msgspec.Struct):
    parent_model: str
    format: str
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class ShowResponse(msgspec.Struct):
    modelfile: str
    parameters: str
    template: str
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class ListedModel(msgspec.Struct):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class RunningModel(msgspec.Struct):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int


class TagsResponse(msgspec.Struct):
    models: list[ListedModel]


class PsResponse(msgspec.Struct):
    models: list[RunningModel]


# -- the fake's own state ----------------------------------------------------------------------------


class FakeModel(msgspec.Struct, kw_only=True):
    """A model the fake can serve once it is local (pulled)."""

    name: str
    family: str = "llama"
    parameter_size: str = "8.0B"
    context_length: int | None = 131072
    size: int = 4_920_753_328
    embedding_length: int = 4096

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> ModelDetails:
        return ModelDetails(parent_model="", format="gguf", family=self.family, families=[self.family],
                            parameter_size=self.parameter_size, quantization_level="Q4_K_M")


class ChatRecord(msgspec.Struct, kw_only=True):
    """One generating ``/api/chat`` call and how it ended: ``done``, ``error`` or ``disconnected``."""

    model: str
    body: dict[str, Any]
    tokens_sent: int = 0
    outcome: str = "running"


def canonical(name: str) -> str:
    """Ollama's default tag: ``llama3.2`` is ``llama3.2:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _error(message: str, status: int) -> Response[bytes]:
    return Response(_encoder.encode({"error": message}), status_code=status, media_type="application/json")


def _json(payload: Any) -> Response[bytes]:
    return Response(_encoder.encode(payload), status_code=200, media_type="application/json")


def _ndjson(lines: AsyncIterator[bytes]) -> Stream:
    return Stream(lines, status_code=200, media_type="application/x-ndjson")


def _keep_alive_seconds(value: int | float | str | None) -> float | None:
    """Seconds to stay loaded (None: forever); Ollama takes seconds or a duration like ``5m``."""
    if value is None:
        return 300.0
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", value.strip())
    if match is None:
        raise ValueError(f"time: invalid duration {value!r}")
    number = float(match[1])
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match[2]]
    return None if number < 0 else number * scale


def plan(messages: list[Message], options: dict[str, Any]) -> tuple[list[str], str, int, int]:
    """What the fake model says: ``(pieces, done_reason, prompt_eval_count, eval_count)``.

    The answer is the last user message's words, one token each, cut at ``num_predict`` tokens
    (``done_reason`` "length") and before the first ``stop`` sequence."""
    prompt = next((m.content for m in reversed(messages) if m.role == "user"), "")
    words = prompt.split()
    limit = int(options.get("num_predict", -1))
    kept = words if limit < 0 else words[:limit]
    reason = "length" if len(kept) < len(words) else "stop"
    pieces = [w if i == 0 else " " + w for i, w in enumerate(kept)]
    text = "".join(pieces)
    cuts = [i for i in (text.find(s) for s in options.get("stop") or [] if s) if i >= 0]
    eval_count = len(pieces)
    if cuts:
        cut, reason, out, used = min(cuts), "stop", [], 0
        for piece in pieces:
            if used + len(piece) >= cut:
                out.append(piece[:cut - used])
                break
            out.append(piece)
            used += len(piece)
        pieces, eval_count = [p for p in out if p], len(out)
    prompt_eval_count = sum(len(m.content.split()) for m in messages)
    return pieces, reason, prompt_eval_count, eval_count


class FakeOllama:
    """Models in ``library`` can be pulled; models in ``local`` are already there.

    ``token_delay`` slows generation (seconds per token); ``fail_after`` makes every generating
    chat fail with ``fail_message`` after that many tokens, as Ollama reports errors mid-stream."""

    def __init__(self, *, local: Sequence[FakeModel] = (), library: Sequence[FakeModel] = (),
                 token_delay: float = 0.0) -> None:
        self.local: dict[str, FakeModel] = {canonical(m.name): m for m in local}
        self.library: dict[str, FakeModel] = {canonical(m.name): m for m in [*local, *library]}
        self.token_delay = token_delay
        self.fail_after: int | None = None
        self.fail_message = "llama runner process has terminated: CUDA error: out of memory"
        self.loaded: dict[str, float | None] = {}
        """Running models and when they expire (``time.time()``; None: never)."""
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.chats: list[ChatRecord] = []
        self.url = ""

    def add_local(self, model: FakeModel) -> None:
        """Make ``model`` present locally, as if pulled earlier."""
        self.library[canonical(model.name)] = self.local[canonical(model.name)] = model

    # -- what tests assert on ---------------------------------------------------------------------

    def requests(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies sent to ``path`` (e.g. ``/api/pull``), oldest first."""
        return [body for p, body in self.calls if p == path]

    @property
    def unloads(self) -> list[str]:
        """Models unloaded with an empty chat and ``keep_alive`` 0."""
        return [body["model"] for body in self.requests("/api/chat")
                if not body.get("messages") and _is_zero(body.get("keep_alive"))]

    # -- behaviour --------------------------------------------------------------------------------

    def _keep(self, name: str, keep_alive: int | float | str | None) -> None:
        seconds = _keep_alive_seconds(keep_alive)
        if seconds == 0:
            self.loaded.pop(name, None)
        else:
            self.loaded[name] = None if seconds is None else time.time() + seconds

    def _running(self) -> dict[str, float | None]:
        now = time.time()
        for name, expires in list(self.loaded.items()):
            if expires is not None and expires <= now:
                del self.loaded[name]
        return self.loaded

    def _generating(self, path: str, body: dict[str, Any], kind: type[R]) -> R | Response[Any]:
        """The recorded request as ``kind`` with its model kept loaded, or the error Ollama answers."""
        self.calls.append((path, body))
        try:
            request = msgspec.convert(body, kind)
            _keep_alive_seconds(request.keep_alive)  # type: ignore[attr-defined]
        except (msgspec.ValidationError, ValueError) as exc:
            return _error(str(exc), 400)
        model = request.model  # type: ignore[attr-defined]
        if canonical(model) not in self.local:
            return _error(f'model "{model}" not found, try pulling it first', 404)
        self._keep(canonical(model), request.keep_alive)  # type: ignore[attr-defined]
        return request

    async def chat(self, body: dict[str, Any]) -> Response[Any]:
        request = self._generating("/api/chat", body, ChatRequest)
        if isinstance(request, Response):
            return request
        name = canonical(request.model)
        if not request.messages:  # load, or unload with keep_alive 0
            reason = "unload" if name not in self.loaded else "load"
            return _json(ChatChunk(model=request.model, created_at=_now(), message=Message("assistant", ""),
                                   done=True, done_reason=reason))
        for message in request.messages:
            for image in message.images or ():
                try:
                    base64.b64decode(image, validate=True)
                except ValueError:
                    return _error("illegal base64 data at input byte 4", 400)  # as Ollama answers
        record = ChatRecord(model=name, body=body)
        self.chats.append(record)
        calls = tool_calls_for(request)
        if calls is not None:
            record.tokens_sent, record.outcome = 1, "done"
            return self._tool_calls(request, calls)
        if request.messages[-1].role == "tool":  # a tool's result: the fake answers with its words
            request.messages.append(Message("user", request.messages[-1].content))
        pieces, reason, prompt_count, eval_count = plan(request.messages, request.options)
        if request.format is not None:  # constrained: the answer is JSON, one token a piece
            schema = request.format if isinstance(request.format, dict) else {"type": "object", "required": ["answer"]}
            answer = _encoder.encode(instance_of(schema, "".join(pieces))).decode()
            pieces, reason = [answer[i:i + 4] for i in range(0, len(answer), 4)], "stop"
            eval_count = len(pieces)
        if not request.stream:
            if self.fail_after is not None:
                record.outcome = "error"
                return _error(self.fail_message, 500)
            record.tokens_sent, record.outcome = len(pieces), "done"
            return _json(self._final(request.model, "".join(pieces), reason, prompt_count, eval_count))
        top = request.top_logprobs if request.logprobs else None
        return _ndjson(self._stream(record, request.model, pieces, reason, prompt_count, eval_count, top))

    async def _stream(self, record: ChatRecord, model: str, pieces: list[str], reason: str, prompt_count: int,
                      eval_count: int, top: int | None) -> AsyncIterator[bytes]:
        try:
            for i, piece in enumerate(pieces):
                if self.fail_after is not None and record.tokens_sent >= self.fail_after:
                    record.outcome = "error"
                    yield _encoder.encode({"error": self.fail_message}) + b"\n"
                    return
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                record.tokens_sent += 1
                yield _encoder.encode(ChatChunk(model=model, created_at=_now(), message=Message("assistant", piece),
                                                done=False, logprobs=None if top is None else logprobs_of(piece, i, top))
                                      ) + b"\n"
            record.outcome = "done"
            yield _encoder.encode(self._final(model, "", reason, prompt_count, eval_count)) + b"\n"
        except (asyncio.CancelledError, GeneratorExit):
            record.outcome = "disconnected"  # the client closed the stream: stop generating
            raise

    def _tool_calls(self, request: ChatRequest, calls: list[dict[str, Any]]) -> Response[Any]:
        message = ToolCallsMessage("assistant", "", calls)
        if not request.stream:
            return _json(ChatChunk(model=request.model, created_at=_now(), message=message, done=True,  # type: ignore[arg-type]
                                   done_reason="stop", prompt_eval_count=3, eval_count=1))

        async def lines() -> AsyncIterator[bytes]:  # as Ollama streams them: the calls, then the final chunk
            yield _encoder.encode(ChatChunk(model=request.model, created_at=_now(), message=message,  # type: ignore[arg-type]
                                            done=False)) + b"\n"
            yield _encoder.encode(self._final(request.model, "", "stop", 3, 1)) + b"\n"

        return _ndjson(lines())

    @staticmethod
    def _final(model: str, content: str, reason: str, prompt_count: int, eval_count: int) -> ChatChunk:
        return ChatChunk(model=model, created_at=_now(), message=Message("assistant", content), done=True,
                         done_reason=reason, total_duration=(prompt_count + eval_count + 1) * _NS,
                         load_duration=_NS, prompt_eval_count=prompt_count, prompt_eval_duration=prompt_count * _NS,
                         eval_count=eval_count, eval_duration=eval_count * _NS)

    async def generate(self, body: dict[str, Any]) -> Response[Any]:
        """A completion of ``prompt`` (templated unless ``raw``): its words, as ``chat`` answers."""
        request = self._generating("/api/generate", body, GenerateRequest)
        if isinstance(request, Response):
            return request
        prompt = request.prompt if request.raw else TEMPLATE.format(prompt=request.prompt)
        pieces, reason, prompt_count, eval_count = plan([Message("user", prompt)], request.options)

        def chunk(text: str, done: bool = False, i: int = 0) -> GenerateChunk:
            if not done:
                logprobs = logprobs_of(text, i, request.top_logprobs) if request.logprobs else None
                return GenerateChunk(model=request.model, created_at=_now(), response=text, done=False,
                                     logprobs=logprobs)
            return GenerateChunk(model=request.model, created_at=_now(), response=text, done=True, done_reason=reason,
                                 total_duration=(prompt_count + eval_count + 1) * _NS, prompt_eval_count=prompt_count,
                                 eval_count=eval_count, eval_duration=eval_count * _NS)

        if not request.stream:
            return _json(chunk("".join(pieces), done=True))

        async def lines() -> AsyncIterator[bytes]:
            for i, piece in enumerate(pieces):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                yield _encoder.encode(chunk(piece, i=i)) + b"\n"
            yield _encoder.encode(chunk("", done=True)) + b"\n"

        return _ndjson(lines())

    async def embed(self, body: dict[str, Any]) -> Response[Any]:
        self.calls.append(("/api/embed", body))
        try:
            request = msgspec.convert(body, EmbedRequest)
            _keep_alive_seconds(request.keep_alive)
        except (msgspec.ValidationError, ValueError) as exc:
            return _error(str(exc), 400)
        name = canonical(request.model)
        model = self.local.get(name)
        if model is None:
            return _error(f'model "{request.model}" not found, try pulling it first', 404)
        texts = [request.input] if isinstance(request.input, str) else request.input
        size = request.dimensions or model.embedding_length
        if not 0 < size <= model.embedding_length:
            return _error(f"invalid dimensions: {size}", 400)
        context = int(request.options.get("num_ctx") or model.context_length or 2048)
        counts = [len(text.split()) for text in texts]
        if not request.truncate and any(count > context for count in counts):
            return _error("the input length exceeds the context length", 400)
        self._keep(name, request.keep_alive)
        return _json(EmbedResponse(model=request.model, embeddings=[embedding(text, size) for text in texts],
                                   total_duration=(sum(counts) + 1) * _NS, load_duration=_NS,
                                   prompt_eval_count=sum(counts)))

    async def pull(self, body: dict[str, Any]) -> Response[Any]:
        self.calls.append(("/api/pull", body))
        request = msgspec.convert(body, PullRequest)
        name = canonical(request.model or request.name)
        model = self.library.get(name)
        if not request.stream:
            if model is None:
                return _error("pull model manifest: file does not exist", 500)
            self.local[name] = model
            return _json(Progress("success"))
        return _ndjson(self._pull_progress(name, model))

    async def _pull_progress(self, name: str, model: FakeModel | None) -> AsyncIterator[bytes]:
        yield _encoder.encode(Progress("pulling manifest")) + b"\n"
        if model is None:  # Ollama answers 200 and reports the failure in the stream
            yield _encoder.encode({"error": "pull model manifest: file does not exist"}) + b"\n"
            return
        layers = [(f"sha256:{model.digest}", model.size), (f"sha256:{hashlib.sha256(b'template').hexdigest()}", 1_400)]
        for digest, total in layers:
            yield _encoder.encode(Progress(f"downloading {digest}", digest=digest, total=total)) + b"\n"
            for quarter in range(1, 5):
                yield _encoder.encode(Progress(f"downloading {digest}", digest=digest, total=total,
                                               completed=total * quarter // 4)) + b"\n"
        for status in ("verifying sha256 digest", "writing manifest", "removing any unused layers"):
            yield _encoder.encode(Progress(status)) + b"\n"
        self.local[name] = model
        yield _encoder.encode(Progress("success")) + b"\n"

    async def show(self, body: dict[str, Any]) -> Response[Any]:
        self.calls.append(("/api/show", body))
        request = msgspec.convert(body, ShowRequest)
        wanted = request.model or request.name
        model = self.local.get(canonical(wanted))
        if model is None:
            return _error(f"model '{wanted}' not found", 404)
        info: dict[str, Any] = {"general.architecture": model.family, "general.parameter_count": 8_030_261_248,
                                f"{model.family}.embedding_length": model.embedding_length}
        if model.context_length is not None:
            info[f"{model.family}.context_length"] = model.context_length
        return _json(ShowResponse(modelfile=f"FROM {model.name}\n", parameters='stop "<|eot_id|>"',
                                  template="{{ .Prompt }}", details=model.details(), model_info=info,
                                  capabilities=["completion"], modified_at=_now()))

    async def tags(self) -> Response[Any]:
        self.calls.append(("/api/tags", {}))
        return _json(TagsResponse([ListedModel(name=n, model=n, modified_at=_now(), size=m.size, digest=m.digest,
                                            details=m.details()) for n, m in self.local.items()]))

    async def ps(self) -> Response[Any]:
        self.calls.append(("/api/ps", {}))
        running = []
        for name, expires in self._running().items():
            model = self.local[name]
            until = datetime.datetime.fromtimestamp(expires if expires is not None else 2**33, datetime.UTC)
            running.append(RunningModel(name=name, model=name, size=model.size, digest=model.digest,
                                        details=model.details(), expires_at=until.isoformat(), size_vram=model.size))
        return _json(PsResponse(running))

    def app(self) -> Litestar:
        fake = self

        @post("/api/chat")
        async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
            return await fake.chat(await _body(request))

        @post("/api/generate")
        async def generate(request: Request[Any, Any, Any]) -> Response[Any]:
            return await fake.generate(await _body(request))

        @post("/api/embed")
        async def embed(request: Request[Any, Any, Any]) -> Response[Any]:
            return await fake.embed(await _body(request))

        @post("/api/pull")
        async def pull(request: Request[Any, Any, Any]) -> Response[Any]:
            return await fake.pull(await _body(request))

        @post("/api/show")
        async def show(request: Request[Any, Any, Any]) -> Response[Any]:
            return await fake.show(await _body(request))

        @get("/api/tags")
        async def tags() -> Response[Any]:
            return await fake.tags()

        @get("/api/ps")
        async def ps() -> Response[Any]:
            return await fake.ps()

        return Litestar([chat, generate, embed, pull, show, tags, ps])


async def _body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The JSON body as sent, so tests see exactly which fields the client set."""
    return msgspec.json.decode(await request.body()) or {}


def embedding(text: str, size: int) -> list[float]:
    """The fake's vector for ``text``: a unit vector from its hash, cut to ``size`` values."""
    values = [b - 127.5 for i in range(-(-size // 32)) for b in hashlib.sha256(f"{i}:{text}".encode()).digest()]
    norm = sum(v * v for v in values[:size]) ** 0.5
    return [v / norm for v in values[:size]]


def _is_zero(keep_alive: Any) -> bool:
    try:
        return _keep_alive_seconds(keep_alive) == 0
    except (ValueError, TypeError):
        return False


@contextmanager
def run_fake_ollama(**kwargs: Any) -> Iterator[FakeOllama]:
    """A FakeOllama served on a free loopback port; ``.url`` is its base URL."""
    fake = FakeOllama(**kwargs)
    with serve(fake.app()) as server:
        fake.url = server.url
        yield fake
